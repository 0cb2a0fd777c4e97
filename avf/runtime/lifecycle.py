"""A stage process's lifecycle: SIGTERM ends it like Ctrl-C does, with exit code 128 + signal.

Every stage (data, training, evaluation) runs its body inside :func:`sigterm_raises`, so a scheduler's
SIGTERM unwinds the stack: ``finally`` blocks remove temp outputs, worker pools and private clusters end,
and the tracking run ends KILLED. Bounded end-of-run bookkeeping runs inside :func:`sigterm_deferred`.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType

__all__ = [
    "StageTerminated",
    "keep_python_signal_handlers",
    "received_signal",
    "sigterm_deferred",
    "sigterm_raises",
]


class StageTerminated(SystemExit):
    """Raised by the SIGTERM handler of :func:`sigterm_raises`; exits with 128 + signal number."""

    def __init__(self, signum: int):
        super().__init__(128 + signum)
        self.signum = signum


_received_signal: int | None = None


def received_signal() -> int | None:
    """The signal a stage's SIGTERM handler got, if any: code that swallows the :class:`StageTerminated` it
    raised (Ray's blocking ``ray.get`` turns it into ``SystemExit(1)``) re-raises it with this."""
    return _received_signal


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


@contextlib.contextmanager
def sigterm_raises(enabled: bool = True) -> Iterator[None]:
    """Inside the block SIGTERM raises :class:`StageTerminated`; the previous handler is restored.

    A no-op when ``enabled`` is false or off the main thread (Python delivers signals to the main thread).
    """
    if not enabled or not _in_main_thread():
        yield
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        global _received_signal
        _received_signal = signum
        raise StageTerminated(signum)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)


@contextlib.contextmanager
def sigterm_deferred(enabled: bool = True) -> Iterator[list[int]]:
    """Hold SIGTERM during bounded bookkeeping; yields the list of signals received meanwhile."""
    got: list[int] = []
    if not enabled or not _in_main_thread():
        yield got
        return
    previous = signal.signal(signal.SIGTERM, lambda s, f: got.append(s))
    try:
        yield got
    finally:
        signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)


@contextlib.contextmanager
def keep_python_signal_handlers() -> Iterator[None]:
    """Put the process's Python SIGTERM / SIGINT handlers back after the block (e.g. around ``ray.init``).

    ``ray.init`` installs its own SIGTERM handling in the driver (measured with Ray 2.60: a stack dump, then
    the process aborted with exit -6), so the stage's handler (end the tracking run KILLED, remove temp
    outputs, exit 143) would never run and nothing would be cleaned up.
    """
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        if _in_main_thread():
            for sig, handler in saved.items():
                if handler is not None:  # None: set outside Python, nothing Python can put back
                    signal.signal(sig, handler)
