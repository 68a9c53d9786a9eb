"""SIGTERM / SIGINT: stop at a safe point, save a resumable checkpoint, exit 143 / 130.

A scheduler pre-empting a job sends SIGTERM; a user presses Ctrl-C (SIGINT). Inside training
(``deferred_signals``) the signal only sets a flag; the checkpoint callback sees it after the
current step, saves ``last.ckpt`` and stops the trainer, and ``train_run`` then raises
``RunInterrupted``. Outside training (``raising_signals``, e.g. around ``eval compare``) the
signal raises ``RunInterrupted`` at once, so atomic writes in flight clean up their temp files.
Entry points turn ``RunInterrupted`` into the exit status 128 + signal number (143 / 130), so a
pre-empted run is never recorded as a success.
"""
from __future__ import annotations

import contextlib
import signal
import threading
from typing import Iterator

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class RunInterrupted(BaseException):
    """Raised after a SIGTERM / SIGINT (a BaseException: ``except Exception`` must not swallow it)."""

    def __init__(self, signum: int, message: str = ""):
        self.signum = int(signum)
        name = signal.Signals(self.signum).name
        super().__init__(message or f"interrupted by {name}")

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


class StopRequest:
    """The first signal received while deferred (None while none has come)."""

    signum: int | None = None

    def __bool__(self) -> bool:
        return self.signum is not None


#: the process-wide request set by the deferred handlers; the checkpoint callback reads it
requested = StopRequest()


@contextlib.contextmanager
def _handlers(handler) -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():  # signal.signal only works there
        yield
        return
    old = {s: signal.getsignal(s) for s in SIGNALS}
    for s in SIGNALS:
        signal.signal(s, handler)
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


@contextlib.contextmanager
def deferred_signals() -> Iterator[StopRequest]:
    """Within: SIGTERM/SIGINT set ``requested.signum`` (cleared on entry); a second SIGINT raises
    ``RunInterrupted`` at once, without waiting for the checkpoint (the user insists)."""
    requested.signum = None

    def handler(signum, frame):
        if requested.signum is not None and signum == signal.SIGINT:
            raise RunInterrupted(signum, "interrupted twice by SIGINT: stopped at once (the last periodic checkpoint is kept)")
        requested.signum = signum

    with _handlers(handler):
        yield requested


@contextlib.contextmanager
def raising_signals() -> Iterator[None]:
    """Within: SIGTERM/SIGINT raise ``RunInterrupted``."""

    def handler(signum, frame):
        raise RunInterrupted(signum)

    with _handlers(handler):
        yield
