import os

import numpy as np
import pytest
import torch

os.environ.setdefault("WDIST_NO_PROGRESS", "1")
torch.set_num_threads(1)  # small problems: threads only add sync overhead


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)
    np.random.seed(0)
