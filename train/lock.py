"""One writer per folder: an advisory lock file (``<folder>/.lock``) holding the holder's pid and host.

    with FolderLock(run_dir, wait=False):   # a second process gets FolderLockedError naming the holder
        ...                                 # wait=True (or seconds) waits for the holder to finish

The exclusion is ``fcntl.flock`` on the lock file, which the kernel drops when the holding
process dies (``kill -9`` included), so a stale lock of a dead process is taken over without
anyone deleting files; the pid/host written into the file are what the error message shows.
"""
from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
import time
from pathlib import Path

LOCK_NAME = ".lock"


class FolderLockedError(RuntimeError):
    """Another live process holds the folder's lock."""


def _read_holder(fd: int) -> dict:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        return json.loads(os.read(fd, 4096).decode() or "{}")
    except (OSError, ValueError):
        return {}


class FolderLock:
    """Exclusive lock on ``folder`` (created if needed). ``wait``: False = fail at once, True = wait
    for ever, a number = wait that many seconds, then fail. Re-entrant within one process is not
    supported (a second FolderLock on the same folder in the same process fails too)."""

    def __init__(self, folder: str | os.PathLike, wait: bool | float = False, what: str = "folder", poll_s: float = 0.2):
        self.folder, self.wait, self.what, self.poll_s = Path(folder), wait, what, poll_s
        self.path = self.folder / LOCK_NAME
        self.fd: int | None = None

    def acquire(self) -> "FolderLock":
        self.folder.mkdir(parents=True, exist_ok=True)
        flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
        try:
            fd = os.open(self.path, flags, 0o644)
        except OSError as e:
            raise FolderLockedError(f"cannot open the lock file {self.path}: {e}") from None
        deadline = None if self.wait is True else time.monotonic() + (0 if self.wait is False else float(self.wait))
        announced = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                holder = _read_holder(fd)
                who = f"pid {holder.get('pid', '?')} on host {holder.get('host', '?')}"
                if deadline is not None and time.monotonic() >= deadline:
                    os.close(fd)
                    hint = "wait for it to finish, or rerun with --wait (lock_wait=true)" if self.wait is False else f"gave up after {self.wait} s"
                    raise FolderLockedError(f"{self.what} {self.folder} is in use by {who} (lock file {self.path}); {hint}") from None
                if not announced:
                    print(f"waiting for {self.what} {self.folder}: in use by {who}", file=sys.stderr, flush=True)
                    announced = True
                time.sleep(self.poll_s)
        info = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.time(), "argv": sys.argv[:8]}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info).encode(), 0)
        self.fd = fd
        return self

    def release(self) -> None:
        if self.fd is not None:
            fd, self.fd = self.fd, None
            try:
                os.ftruncate(fd, 0)  # the file stays (deleting it would race a waiter's open); it is empty when free
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
                os.close(fd)

    def __enter__(self) -> "FolderLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
