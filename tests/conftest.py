import os

import pytest
import torch

os.environ.setdefault("SEQARENA_NO_KERNELS", "")


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
