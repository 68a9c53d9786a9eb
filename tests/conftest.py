import os

import pytest
import torch

os.environ.setdefault("SEQARENA_NO_KERNELS", "")


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


# Tests run tiny ops, where a second OpenMP thread only adds synchronisation cost
# (and, on a busy 2-core machine, waits for a core): one thread is much faster here.
torch.set_num_threads(1)
