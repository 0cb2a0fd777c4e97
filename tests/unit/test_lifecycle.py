"""avf.runtime.lifecycle: the Python signal handlers a block (``ray.init``, ``trainer.fit``) replaces come back."""

from __future__ import annotations

import signal
from typing import Any

import pytest

from avf.runtime.lifecycle import keep_python_signal_handlers


@pytest.mark.parametrize("before", [signal.SIG_IGN, signal.SIG_DFL, signal.default_int_handler])
def test_handlers_replaced_inside_the_block_are_put_back(before: Any) -> None:
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        for sig in saved:
            signal.signal(sig, before)
        with keep_python_signal_handlers():
            for sig in saved:  # what Ray's driver and Ray Train's fit() do, and never undo
                signal.signal(sig, lambda s, f: None)
        assert all(signal.getsignal(sig) is before for sig in saved)  # ignored (a background shell) included
    finally:
        for sig, handler in saved.items():
            if handler is not None:
                signal.signal(sig, handler)


def test_handlers_come_back_when_the_block_raises() -> None:
    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(SystemExit), keep_python_signal_handlers():
        signal.signal(signal.SIGINT, lambda s, f: None)
        raise SystemExit(1)  # how Ray Train's own SIGINT handler ends a run
    assert signal.getsignal(signal.SIGINT) is before
