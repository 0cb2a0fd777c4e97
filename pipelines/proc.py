"""Run a command and hand each output line to a callback as it is printed (no Prefect here).

stdout and stderr are merged (their order is kept) and read line by line, so a stage's log reaches
the Prefect run log while the stage is still running. ``\\r`` progress redraws keep only their last
state. The command runs in its own session; if the caller is interrupted, the whole group is killed.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

TAIL_LINES = 40
MAX_LINE_CHARS = 4000
CHILD_ENV = {
    "PYTHONUNBUFFERED": "1",  # python stages print as they go instead of at exit
    "DVC_NO_ANALYTICS": "1",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DO_NOT_TRACK": "true",
}


class CommandFailed(RuntimeError):
    """A command exited non-zero; the message ends with the tail of its output."""

    def __init__(self, cmd: Sequence[str], returncode: int, tail: Sequence[str]) -> None:
        self.cmd = list(cmd)
        self.returncode = returncode
        self.tail = list(tail)
        shown = "\n".join(f"  | {line}" for line in self.tail) or "  | (no output)"
        super().__init__(f"`{' '.join(self.cmd)}` exited with {returncode}; last output lines:\n{shown}")


@dataclass
class CommandResult:
    cmd: list[str]
    returncode: int
    lines: list[str] = field(default_factory=list)  # the last ``keep`` lines


def executable(name: str, env_var: str | None = None) -> str:
    """``$env_var`` if set, else ``name`` next to this interpreter (the project venv), else on PATH."""
    if env_var and (override := os.environ.get(env_var)):
        return override
    local = Path(sys.executable).with_name(name)
    if local.exists():
        return str(local)
    found = shutil.which(name)
    if found is None:
        raise FileNotFoundError(f"`{name}` is neither next to {sys.executable} nor on PATH")
    return found


def child_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    for key, value in CHILD_ENV.items():
        env.setdefault(key, value)
    env.update(extra or {})
    return env


def _clean(raw: bytes) -> str:
    text = raw.decode("utf-8", errors="replace").rstrip("\r\n")
    if "\r" in text:  # a progress bar redrawn in place: keep what the terminal would show
        text = next((part for part in reversed(text.split("\r")) if part.strip()), "")
    return text if len(text) <= MAX_LINE_CHARS else text[:MAX_LINE_CHARS] + " [...]"


def stream_command(
    cmd: Sequence[str],
    cwd: str | Path,
    on_line: Callable[[str], None],
    env: Mapping[str, str] | None = None,
    keep: int = TAIL_LINES,
) -> CommandResult:
    """Run ``cmd`` in ``cwd``, calling ``on_line`` for every non-empty output line as it arrives."""
    tail: deque[str] = deque(maxlen=keep)
    proc = subprocess.Popen(
        list(cmd),
        cwd=cwd,
        env=dict(env) if env is not None else child_env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    assert proc.stdout is not None
    try:
        for raw in iter(proc.stdout.readline, b""):
            line = _clean(raw)
            if line.strip():
                tail.append(line)
                on_line(line)
        returncode = proc.wait()
    finally:
        proc.stdout.close()
        if proc.poll() is None:  # interrupted (cancelled flow, Ctrl-C, a failing callback): end the group
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    return CommandResult(list(cmd), returncode, list(tail))


def check(result: CommandResult) -> CommandResult:
    """Raise :class:`CommandFailed` (with the output tail) unless ``result`` exited 0."""
    if result.returncode != 0:
        raise CommandFailed(result.cmd, result.returncode, result.lines)
    return result
