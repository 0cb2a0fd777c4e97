"""What every data stage shares: input fingerprints, sidecar reading, and clean-up of its output folder."""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Generator, Iterator, Sequence
from pathlib import Path
from typing import Any

__all__ = ["digest", "file_stamp", "prune_stale", "read_sidecar", "remove_temps", "worker_results"]


def digest(payload: Any) -> str:
    """A short stable hash of a JSON-able payload (a stage's fingerprint of one output)."""
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


def file_stamp(path: str | Path | None) -> list[Any]:
    """``[path, size, sha256]`` of an input (``[path, None]`` when unreadable, ``[]`` for no path).

    The content, not the modification time: fingerprints are written into the outputs, so a time would give
    the same inputs different output bytes in every checkout, DVC experiment workspace or machine, and DVC's
    run-cache would then miss every stage downstream. Each stage reads its inputs anyway; hashing them costs
    about 1 s per GB.
    """
    if path is None:
        return []
    p = Path(path)
    if p.is_dir():
        return [str(p), "dir"]
    try:
        with p.open("rb") as f:
            sha = hashlib.file_digest(f, "sha256").hexdigest()[:16]
    except OSError:
        return [str(p), None]
    return [str(p), p.stat().st_size, sha]


def read_sidecar(path: Path) -> dict[str, Any] | None:
    """A stage's per-clip JSON sidecar, or None when it is missing or unreadable."""
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None


def remove_temps(out_dir: Path) -> None:
    """Delete half-written temp files (``.<name>.<random>.tmp`` from ``atomic_path``) that a killed run
    left behind, so they never end up in the stage's DVC output."""
    for p in out_dir.glob(".*.tmp"):
        if p.is_file():
            p.unlink(missing_ok=True)


@contextlib.contextmanager
def worker_results(results: Generator[Any, None, None], out_dir: Path) -> Iterator[Generator[Any, None, None]]:
    """``results`` of :func:`~avf.data.parallel.run_tasks` whose workers write into ``out_dir``. Interrupted
    (SIGTERM, Ctrl-C, an error): end the workers first, then delete the temp file a worker killed mid-write
    left behind."""
    try:
        yield results
    except BaseException:
        results.close()  # the pool terminates and joins its worker processes (Ray: cancels the tasks)
        remove_temps(out_dir)
        raise


def prune_stale(out_dir: Path, keep: set[str], suffixes: Sequence[str]) -> int:
    """Remove outputs of clips that are no longer in the dataset (stale after a rescan); returns the count."""
    removed = 0
    for suffix in suffixes:
        for p in out_dir.glob(f"*{suffix}"):
            if p.name.startswith("."):
                continue
            if p.name[: -len(suffix)] not in keep:
                p.unlink()
                removed += 1
    return removed
