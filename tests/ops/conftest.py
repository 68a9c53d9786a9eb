"""``cpu_path``: run an op test once per CPU path, the pure-PyTorch form and the compiled kernel
(``SEQARENA_CPU_KERNELS`` = 0 / 1, see archs/ops/_compile.py). The compiled one builds on first
use (about a second per op family); it is skipped only where there is no C++ compiler, and a
failed build fails the test."""
import pytest

from archs.ops import _compile


@pytest.fixture(params=["pure", "compiled"])
def cpu_path(request, monkeypatch):
    if request.param == "compiled" and _compile.compiler() is None:
        pytest.skip("no C++ compiler: the compiled CPU kernels cannot be built here")
    monkeypatch.setenv(_compile.ENV_MODE, "0" if request.param == "pure" else "1")
    return request.param
