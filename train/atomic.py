"""The one home of atomic file writes: a temp file made by ``mkstemp`` in the target folder, then ``os.replace``.

A reader (or a rerun after a kill) sees the old file or the new one, never half of one. The temp
name is random and created with ``O_EXCL`` (``mkstemp``), so a symlink planted at a predictable
name is never followed; ``os.replace`` swaps the directory entry and does not write through a
symlink at the target either. ``train`` and ``eval`` (``eval/io.py``) both write through here.
"""
from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Callable, Iterator


def _umask() -> int:
    old = os.umask(0)
    os.umask(old)
    return old


_UMASK = _umask()


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, mode: int = 0o666) -> Iterator[str]:
    """Yield a fresh temp path next to ``path``; on success it replaces ``path``, on any error it is removed.

    ``mode`` (before the umask) is applied to the temp file, since ``mkstemp`` makes 0600 files.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield tmp
        os.chmod(tmp, mode & ~_UMASK)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write(path: str | os.PathLike, write: Callable[[str], None], mode: int = 0o666) -> Path:
    """``write(tmp_path)`` fills a temp file that then replaces ``path`` atomically."""
    with atomic_path(path, mode) as tmp:
        write(tmp)
    return Path(path)


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    def w(tmp: str) -> None:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())

    return atomic_write(path, w)


def write_text(path: str | os.PathLike, text: str) -> Path:
    """``text`` as UTF-8, atomically (fsynced before the rename)."""
    return write_bytes(path, text.encode("utf-8"))
