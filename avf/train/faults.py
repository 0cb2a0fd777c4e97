"""Fault injection for reliability tests: kill a worker process at a chosen step, once.

Set ``AVF_FAULT_KILL="rank=1,step=5,marker=/tmp/x"``: the process of that rank SIGKILLs itself right
after optimizer step 5, and creates the marker file first so the restarted run does not crash again.
With ``mode=raise`` it raises :class:`InjectedFault` instead (an in-process interruption).
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

ENV = "AVF_FAULT_KILL"


class InjectedFault(RuntimeError):
    """Raised by :func:`maybe_crash` in ``mode=raise``."""


def _spec() -> dict[str, str] | None:
    raw = os.environ.get(ENV)
    if not raw:
        return None
    return dict(part.split("=", 1) for part in raw.split(",") if "=" in part)


def maybe_crash(rank: int, step: int) -> None:
    spec = _spec()
    if spec is None or int(spec.get("rank", 0)) != rank or int(spec.get("step", -1)) != step:
        return
    marker = Path(spec.get("marker", "/tmp/avf-fault-marker"))
    if marker.exists():
        return
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(f"killed rank {rank} at step {step}\n")
    if spec.get("mode") == "raise":
        raise InjectedFault(f"injected fault at rank {rank} step {step}")
    os.kill(os.getpid(), signal.SIGKILL)
