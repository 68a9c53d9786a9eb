"""Compiled CPU kernels: build a plain C++ shared library on first use, cache it, load it with ctypes.

Why this tool (measured on the project's 2-core box, see the README's CPU-kernels note): a
``torch.utils.cpp_extension.load`` build of a one-line extension took 25.7 s (the torch headers
dominate), at the 30 s budget before any real kernel; the same compiler on a C++ file that
includes no torch header took 0.3 s. The kernels only need raw pointers, so they are plain
``extern "C"`` functions (OpenMP over batch x channels) called through ``ctypes``, and the
autograd wiring stays in Python (``torch.autograd.Function``). Nothing to install: ``pip install``
stays pure Python; a C++ compiler (``$CXX`` or ``c++``) is needed only at first use. First use
builds three libraries (selective_scan, linear_scan, causal_conv1d): 7.1 s of compiler CPU time
together (measured; 13 s wall on the loaded 2-core box), then they load from the cache at once.

Path selection, ``SEQARENA_CPU_KERNELS`` (read on every call, so tests can switch it):

- unset or ``auto``: use the compiled kernels on CPU tensors; if no compiler is found or the build
  fails, warn once and use the pure-PyTorch forms;
- ``0``: never use them (pure PyTorch);
- ``1``: always use them on CPU tensors; a failed build is an error.

Cache: ``$SEQARENA_KERNEL_CACHE`` if set, else ``$XDG_CACHE_HOME/seqarena/cpu_kernels`` (default
``~/.cache/seqarena/cpu_kernels``). The file name carries a hash of the sources, the compiler,
its flags and the CPU (``-march=native``), so a changed source or machine rebuilds. A build
writes a temporary file in the cache folder (``mkstemp``) and moves it into place with
``os.replace``: two processes that build at once each produce a whole library and the last
rename wins; nobody ever loads a half-written file.
"""
from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import threading
import time
import warnings
from contextlib import contextmanager
from pathlib import Path

ENV_MODE = "SEQARENA_CPU_KERNELS"
ENV_CACHE = "SEQARENA_KERNEL_CACHE"
FLAGS = ["-O3", "-march=native", "-fopenmp", "-shared", "-fPIC", "-std=c++17", "-fno-math-errno"]

_lock = threading.Lock()
_libs: dict[str, ctypes.CDLL | None] = {}
_errors: dict[str, str] = {}
_build_seconds: dict[str, float] = {}
_warned: set[str] = set()


def mode() -> str:
    """'auto', 'on' or 'off' from ``SEQARENA_CPU_KERNELS`` (a bad value is an error naming it)."""
    v = os.environ.get(ENV_MODE, "").strip().lower()
    if v in ("", "auto"):
        return "auto"
    if v in ("1", "on", "true", "yes"):
        return "on"
    if v in ("0", "off", "false", "no"):
        return "off"
    raise ValueError(f"{ENV_MODE}={os.environ[ENV_MODE]!r}: expected 0 (pure PyTorch), 1 (compiled) or auto")


@contextmanager
def forced(value: str):
    """Run a block with ``SEQARENA_CPU_KERNELS`` set to ``value`` ("0", "1" or "auto"); restores it after."""
    old = os.environ.get(ENV_MODE)
    os.environ[ENV_MODE] = value
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(ENV_MODE, None)
        else:
            os.environ[ENV_MODE] = old


def cache_dir() -> Path:
    if os.environ.get(ENV_CACHE):
        return Path(os.environ[ENV_CACHE])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "seqarena" / "cpu_kernels"


def compiler() -> str | None:
    """``$CXX`` if set (and found), else the first of c++, g++, clang++ on PATH, else None."""
    if os.environ.get("CXX"):
        return shutil.which(os.environ["CXX"])
    return shutil.which("c++") or shutil.which("g++") or shutil.which("clang++")


def _cpu_id() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            keep = [ln for ln in f.read().splitlines() if ln.startswith(("model name", "flags"))][:2]
        return "\n".join(keep)
    except OSError:
        return platform.processor() or platform.machine()


def library_path(name: str, sources: list[Path], cxx: str) -> Path:
    h = hashlib.sha256()
    for s in sources:
        h.update(s.read_bytes())
    h.update(" ".join([os.path.realpath(cxx), *FLAGS, _cpu_id(), platform.machine()]).encode())
    return cache_dir() / f"{name}-{h.hexdigest()[:16]}.so"


def _build(name: str, sources: list[Path]) -> ctypes.CDLL:
    cxx = compiler()
    if cxx is None:
        raise RuntimeError("no C++ compiler found (set CXX, or install g++ or clang++)")
    target = library_path(name, sources, cxx)
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{name}-", suffix=".so.tmp", dir=target.parent)
        os.close(fd)
        try:
            t0 = time.perf_counter()
            cmd = [cxx, *FLAGS, "-I", str(sources[0].parent), str(sources[0]), "-o", tmp]
            r = subprocess.run(cmd, capture_output=True, text=True)
            if r.returncode != 0:
                raise RuntimeError(f"{' '.join(cmd)} failed:\n{r.stderr[-4000:]}")
            os.replace(tmp, target)
            _build_seconds[name] = time.perf_counter() - t0
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    return ctypes.CDLL(str(target))


def load(name: str, sources: list[Path]) -> ctypes.CDLL | None:
    """The compiled library ``name`` built from ``sources`` (the first is compiled; the others are
    headers it includes), or None when the mode is off or (mode auto) the build failed."""
    m = mode()
    if m == "off":
        return None
    with _lock:
        if name not in _libs:
            try:
                _libs[name] = _build(name, sources)
            except Exception as e:  # no compiler, failed build, unloadable library
                _libs[name] = None
                _errors[name] = f"{type(e).__name__}: {e}"
        lib = _libs[name]
    if lib is None:
        if m == "on":
            raise RuntimeError(f"{ENV_MODE}=1 but the CPU kernels '{name}' could not be built: {_errors[name]}")
        if name not in _warned:
            _warned.add(name)
            warnings.warn(f"seqarena: compiled CPU kernels '{name}' unavailable ({_errors[name].splitlines()[0]}); "
                          f"using the pure-PyTorch path. Set {ENV_MODE}=0 to silence this.", RuntimeWarning, stacklevel=3)
    return lib


def status(name: str) -> str:
    """One line for ``python -m eval ops``: whether ``name`` is loaded, its build time, or why not."""
    if name not in _libs:
        return "not loaded"
    if _libs[name] is None:
        return f"unavailable ({_errors.get(name, '?').splitlines()[0]})"
    built = f", built in {_build_seconds[name]:.1f} s" if name in _build_seconds else ", from cache"
    return f"compiled ({_libs[name]._name}{built})"


def ptr(t) -> ctypes.c_void_p:
    """Data pointer of a tensor (or NULL for None) for a ctypes call."""
    return ctypes.c_void_p(t.data_ptr() if t is not None else 0)
