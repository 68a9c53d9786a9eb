"""The compiled-kernel machinery (archs/ops/_compile.py): the SEQARENA_CPU_KERNELS switch, the
once-only warning and pure-PyTorch fallback without a compiler, and a cache that two processes
building at the same time cannot corrupt."""
import ctypes
import subprocess
import sys
import textwrap
import warnings

import pytest
import torch

from archs.ops import _compile, linear_scan, linear_scan_ref
from archs.ops.linear_rnn import cpu as ls_cpu


@pytest.fixture
def fresh(monkeypatch, tmp_path):
    """An empty cache folder and no library loaded yet in this process."""
    monkeypatch.setenv(_compile.ENV_CACHE, str(tmp_path / "cache"))
    monkeypatch.setattr(_compile, "_libs", {})
    monkeypatch.setattr(_compile, "_warned", set())
    return tmp_path / "cache"


@pytest.mark.parametrize("value,mode", [("", "auto"), ("auto", "auto"), ("1", "on"), ("0", "off"), ("off", "off")])
def test_mode_values(monkeypatch, value, mode):
    monkeypatch.setenv(_compile.ENV_MODE, value)
    assert _compile.mode() == mode


def test_bad_mode_names_the_value(monkeypatch):
    monkeypatch.setenv(_compile.ENV_MODE, "fast")
    with pytest.raises(ValueError, match=r"SEQARENA_CPU_KERNELS='fast': expected 0 \(pure PyTorch\), 1 \(compiled\) or auto"):
        _compile.mode()


def test_no_compiler_warns_once_and_falls_back(fresh, monkeypatch):
    monkeypatch.setenv("CXX", "/nonexistent/c++")
    monkeypatch.setenv(_compile.ENV_MODE, "auto")
    a, b = torch.rand(2, 9, 3), torch.randn(2, 9, 3)
    with pytest.warns(RuntimeWarning, match="compiled CPU kernels 'linear_scan' unavailable.*pure-PyTorch path"):
        h = linear_scan(a, b)
    torch.testing.assert_close(h, linear_scan_ref(a, b))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the second call is silent
        linear_scan(a, b)
    assert not fresh.exists() or not list(fresh.iterdir())
    monkeypatch.setenv(_compile.ENV_MODE, "1")
    with pytest.raises(RuntimeError, match="SEQARENA_CPU_KERNELS=1 but the CPU kernels 'linear_scan' could not be built"):
        linear_scan(a, b)


def test_off_never_builds(fresh, monkeypatch):
    monkeypatch.setenv(_compile.ENV_MODE, "0")
    assert ls_cpu.library() is None and not fresh.exists()


@pytest.mark.skipif(_compile.compiler() is None, reason="no C++ compiler")
def test_two_processes_building_at_once_share_one_whole_library(fresh):
    """Two real processes build the same kernel into an empty cache at the same moment; both load a
    working library, and the cache holds exactly one library and no temporary file."""
    script = textwrap.dedent(f"""
        import ctypes, importlib.util, sys
        spec = importlib.util.spec_from_file_location("_compile", {str(_compile.__file__)!r})
        c = importlib.util.module_from_spec(spec); spec.loader.exec_module(c)
        from pathlib import Path
        lib = c.load("linear_scan", [Path({str(ls_cpu.SOURCES[0])!r})])
        a = (ctypes.c_double * 3)(0.5, 0.5, 0.5); b = (ctypes.c_double * 3)(1, 1, 1); h = (ctypes.c_double * 3)()
        L = ctypes.c_int64
        lib.ls_fwd_f64(a, b, None, h, L(1), L(3), L(1), 1)  # h = 1, 1.5, 1.75
        sys.exit(0 if list(h) == [1.0, 1.5, 1.75] else 3)
    """)
    env = {**__import__("os").environ, _compile.ENV_MODE: "1"}
    procs = [subprocess.Popen([sys.executable, "-c", script], env=env, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    errs = [p.communicate(timeout=120)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errs
    files = sorted(f.name for f in fresh.iterdir())
    assert len(files) == 1 and files[0].startswith("linear_scan-") and files[0].endswith(".so"), files
    assert ctypes.CDLL(str(fresh / files[0])).ls_fwd_f64 is not None
