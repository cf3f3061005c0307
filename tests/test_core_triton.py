"""The fused Triton soft-min against the eager one (``torch.logsumexp`` on the dense cost, in
float64), run on the CPU by Triton's interpreter: the same kernels a GPU compiles.

Triton fixes interpreter or compiler when it is first imported, and other tests (torch.compile)
may import it before this module runs: the kernels therefore run in one child process started
with ``TRITON_INTERPRET=1``, which saves its inputs and outputs; the references and every
assertion are computed here.
"""

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("triton", reason="the triton extra is not installed")

from wdist._triton import TRITON_MAX_DIM, triton_available, triton_softmin  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]

# (dtype, p, d, B, n, m, blocks, eps): every p with d in {1, 3, 17}, both dtypes, uneven tile
# remainders in both directions (n, m not multiples of the blocks, several tiles each way).
CASES = [
    (torch.float64, 2.0, 3, 2, 37, 53, (16, 16), 0.3),
    (torch.float32, 2.0, 17, 1, 70, 45, (32, 16), 2.0),
    (torch.float64, 1.0, 1, 2, 45, 30, (16, 16), 0.2),
    (torch.float32, 1.0, 3, 1, 50, 41, (32, 32), 0.3),
    (torch.float64, 1.5, 17, 1, 33, 40, (32, 32), 2.0),
    (torch.float32, 1.5, 1, 2, 40, 19, (16, 16), 0.2),
]


def _case_inputs(case):
    """``x, y, h, g`` of a case: coincident points (zero distances: for p < 2 the gradient's
    0 branch) and zero-weight points (``h = -inf``)."""
    dtype, p, d, bsz, n, m, blocks, eps = case
    gen = torch.Generator().manual_seed(n * m + d)
    x = torch.randn(bsz, n, d, generator=gen, dtype=dtype)
    y = torch.randn(bsz, m, d, generator=gen, dtype=dtype)
    y[:, :3] = x[:, :3]
    h = torch.randn(bsz, m, generator=gen, dtype=dtype)
    h[:, 1::7] = -math.inf
    g = torch.randn(bsz, n, generator=gen, dtype=dtype)
    return x, y, h, g


def _extra_inputs():
    """Default tiles, a batch whose ``h`` is all ``-inf``, and bfloat16 inputs."""
    gen = torch.Generator().manual_seed(3)
    x, y = torch.randn(2, 20, 3, generator=gen), torch.randn(2, 24, 3, generator=gen)
    h, g = torch.randn(2, 24, generator=gen), torch.randn(2, 20, generator=gen)
    h[1] = -math.inf
    return x, y, h, g


def _values_and_grads(fn, x, y, h, g, eps, p):
    leaves = [t.detach().clone().requires_grad_(True) for t in (x, y, h)]
    out = fn(*leaves, eps, p)
    return [out.detach(), *torch.autograd.grad(out, leaves, g.to(out.dtype))]


def _run_child(path: str, import_clean: bool) -> None:
    """In the child (``TRITON_INTERPRET=1``): run every case through the kernels, save it."""
    results = {"available": triton_available("cpu"), "import_clean": import_clean, "cases": []}
    for case in CASES:
        x, y, h, g = _case_inputs(case)
        dtype, p, d, bsz, n, m, (bn, bm), eps = case

        def fused(*args, bn=bn, bm=bm):
            return triton_softmin(*args, block_n=bn, block_m=bm)

        results["cases"].append(_values_and_grads(fused, x, y, h, g, eps, p))
    x, y, h, g = _extra_inputs()
    results["empty"] = triton_softmin(x, y, h, 0.5, 2, num_warps=8)
    bf = [t[:1].bfloat16() for t in (x, y, h, g)]
    results["bf16"] = _values_and_grads(triton_softmin, *bf[:3], bf[3], 0.5, 2)
    torch.save(results, path)


@pytest.fixture(scope="module")
def fused(tmp_path_factory):
    path = tmp_path_factory.mktemp("triton") / "fused.pt"
    # first, before anything imports triton: `import wdist` (and wdist._triton) must not
    code = ("import sys, wdist, wdist._triton; clean = 'triton' not in sys.modules; "
            f"import test_core_triton as t; t._run_child({str(path)!r}, clean)")
    env = {**os.environ, "TRITON_INTERPRET": "1",
           "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests")])}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         cwd=ROOT, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return torch.load(path)


def _reference(x, y, h, eps, p):
    """Eager soft-min in float64 on the dense cost (cdist's direct differences)."""
    x, y, h = x.double(), y.double(), h.double()
    c = torch.cdist(x, y, compute_mode="donot_use_mm_for_euclid_dist") ** p
    return -eps * torch.logsumexp(h.unsqueeze(-2) - c / eps, dim=-1)


def _rel_err(a, b):
    a, b = a.double(), b.double()
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-30))


@pytest.mark.parametrize("index", range(len(CASES)), ids=lambda i: "-".join(
    str(v).replace("torch.", "") for v in CASES[i][:3]))
def test_softmin_matches_eager(fused, index):
    case = CASES[index]
    dtype, p, eps = case[0], case[1], case[-1]
    x, y, h, g = _case_inputs(case)
    got = fused["cases"][index]
    want = _values_and_grads(_reference, x, y, h, g, eps, p)
    tol = 1e-10 if dtype == torch.float64 else 1e-5
    for name, a, b in zip(("value", "grad x", "grad y", "grad h"), got, want):
        assert a.dtype == dtype and a.shape == b.shape, name
        assert _rel_err(a, b) < tol, (name, _rel_err(a, b))
    assert bool((got[3][:, 1::7] == 0).all())  # no gradient into masked points


def test_softmin_default_blocks_half_precision_and_empty_measure(fused):
    """bfloat16 is computed in float32 (value and gradients in bfloat16, to its precision);
    default tiles; a batch whose ``h`` is all ``-inf`` gives ``+inf``, as logsumexp does."""
    assert fused["available"]  # the child ran under the interpreter
    x, y, h, g = _extra_inputs()
    f = fused["empty"]
    assert torch.isinf(f[1]).all() and bool((f[1] > 0).all())
    assert _rel_err(f[0], _reference(x, y, h, 0.5, 2)[0]) < 1e-6
    bf = [t[:1].bfloat16() for t in (x, y, h, g)]
    want = _values_and_grads(_reference, *bf[:3], bf[3], 0.5, 2)
    for a, b in zip(fused["bf16"], want):
        assert a.dtype == torch.bfloat16 and _rel_err(a, b) < 2e-2


def test_bad_input_names_the_argument():
    x, y, h = torch.randn(1, 5, 2), torch.randn(1, 4, 2), torch.zeros(1, 4)
    with pytest.raises(ValueError, match="h \\[B, m\\]"):
        triton_softmin(x, y, torch.zeros(1, 5), 0.1, 2)
    with pytest.raises(ValueError, match="expected x \\[B, n, d\\]"):
        triton_softmin(x[0], y[0], h[0], 0.1, 2)
    with pytest.raises(TypeError, match="h has dtype torch.float64"):
        triton_softmin(x, y, h.double(), 0.1, 2)
    with pytest.raises(TypeError, match="x must be a floating-point"):
        triton_softmin(x.long(), y, h, 0.1, 2)
    with pytest.raises(ValueError, match="eps must be a finite number > 0"):
        triton_softmin(x, y, h, 0.0, 2)
    with pytest.raises(ValueError, match="p must be a finite number >= 1"):
        triton_softmin(x, y, h, 0.1, 0.5)
    with pytest.raises(ValueError, match="block_n must be a power of two"):
        triton_softmin(x, y, h, 0.1, 2, block_n=24)
    with pytest.raises(ValueError, match="num_warps must be a power of two"):
        triton_softmin(x, y, h, 0.1, 2, num_warps=3)
    wide = torch.randn(1, 2, TRITON_MAX_DIM + 1)
    with pytest.raises(ValueError, match=f"d <= {TRITON_MAX_DIM}"):
        triton_softmin(wide, wide, torch.zeros(1, 2), 0.1, 2)


def test_triton_available_needs_cuda_or_the_interpreter(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    if "triton" not in sys.modules or not triton_available("cpu"):
        assert not triton_available("cpu")
        with pytest.raises(ValueError, match="needs an installed triton and a CUDA device"):
            triton_softmin(torch.randn(1, 3, 2), torch.randn(1, 3, 2), torch.zeros(1, 3), 0.1, 2)
    assert triton_available("cuda") == torch.cuda.is_available()
    assert not triton_available("meta")


def test_import_wdist_does_not_import_triton(fused):
    assert fused["import_clean"]
