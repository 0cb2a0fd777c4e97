"""On-disk write-ahead log for MLflow run data (no MLflow import here; :mod:`avf.tracking` sends it).

Every metric, param, tag, artifact, dataset reference and the run's end status is first appended
to ``<buffer_dir>/<run_id>.<writer>.jsonl`` (one JSON object a line, fsynced), then sent. The
highest sequence number the tracking store has acknowledged is kept in ``<same stem>.sent``, so a
replay after a crash or an outage resumes exactly where sending stopped (a resend of a partly
acknowledged batch is harmless: MLflow de-duplicates identical metric rows and equal params).

The writing process holds an exclusive ``flock`` on its log, so ``avf registry flush-buffer``
never replays a log that a live run is still writing. Files of a fully sent log are removed.

Line 0 is a ``meta`` record (run id, tracking URI, whether the writer owns the run's lifecycle);
then entries with ``seq`` 1, 2, ... of kind ``metrics``, ``params``, ``tags``, ``artifact``,
``dataset`` or ``end``.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import time
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

# MLflow's log_batch limits (mlflow.utils.validation).
MAX_METRICS_PER_BATCH = 1000
MAX_PARAMS_TAGS_PER_BATCH = 100
MAX_ENTITIES_PER_BATCH = 1000

BATCHABLE = frozenset({"metrics", "params", "tags"})
FORMAT_VERSION = 1

Entry = dict[str, Any]


def now_ms() -> int:
    return int(time.time() * 1000)


def split_mapping(data: Mapping[str, Any], size: int) -> Iterator[dict[str, Any]]:
    """Yield ``data`` in dicts of at most ``size`` items (each WAL entry fits one log_batch)."""
    items = list(data.items())
    for i in range(0, len(items), size):
        yield dict(items[i : i + size])


def batches(entries: Iterable[Entry]) -> Iterator[list[Entry]]:
    """Group consecutive metric/param/tag entries into log_batch-sized groups; others go alone."""
    group: list[Entry] = []
    counts = {"metrics": 0, "params": 0, "tags": 0}
    limits = {"metrics": MAX_METRICS_PER_BATCH, "params": MAX_PARAMS_TAGS_PER_BATCH, "tags": MAX_PARAMS_TAGS_PER_BATCH}
    for e in entries:
        kind = e["kind"]
        if kind not in BATCHABLE:
            if group:
                yield group
                group, counts = [], dict.fromkeys(counts, 0)
            yield [e]
            continue
        n = len(e["data"])
        if group and (counts[kind] + n > limits[kind] or sum(counts.values()) + n > MAX_ENTITIES_PER_BATCH):
            yield group
            group, counts = [], dict.fromkeys(counts, 0)
        group.append(e)
        counts[kind] += n
    if group:
        yield group


class WriteAheadLog:
    """One writer's append-only log for one run (see the module docstring)."""

    def __init__(self, path: Path, meta: Entry, fd: int, sent: int, pending: list[Entry], next_seq: int):
        self.path = path
        self.meta = meta
        self._fd = fd
        self.sent = sent
        self.pending: deque[Entry] = deque(pending)
        self._next_seq = next_seq

    # -- paths -------------------------------------------------------------------------------
    @property
    def sent_path(self) -> Path:
        return self.path.with_suffix(".sent")

    @property
    def files_dir(self) -> Path:
        """Where copies of artifacts waiting to be uploaded live."""
        return self.path.with_suffix(".files")

    @property
    def run_id(self) -> str:
        return str(self.meta["run_id"])

    @property
    def owner(self) -> bool:
        return bool(self.meta.get("owner", True))

    @property
    def has_end(self) -> bool:
        return any(e["kind"] == "end" for e in self.pending)

    # -- open --------------------------------------------------------------------------------
    @classmethod
    def create(cls, buffer_dir: str | Path, run_id: str, tracking_uri: str, owner: bool) -> WriteAheadLog:
        """Start a new log for this process (a unique file; it is locked until :meth:`close`)."""
        d = Path(buffer_dir)
        d.mkdir(parents=True, exist_ok=True)
        path = d / f"{run_id}.{os.getpid()}-{time.time_ns():x}.jsonl"
        meta: Entry = {
            "seq": 0,
            "kind": "meta",
            "format": FORMAT_VERSION,
            "run_id": run_id,
            "tracking_uri": tracking_uri,
            "owner": owner,
            "pid": os.getpid(),
            "created": now_ms(),
        }
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        wal = cls(path, meta, fd, sent=0, pending=[], next_seq=1)
        wal._write(meta)
        return wal

    @classmethod
    def open_existing(cls, path: str | Path) -> WriteAheadLog | None:
        """Open a leftover log for replay; None when a live process still holds it."""
        path = Path(path)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        entries = read_entries(path)
        if not entries or entries[0].get("kind") != "meta":
            os.close(fd)
            raise ValueError(f"{path}: not an avf MLflow buffer (no meta line)")
        sent = 0
        sent_path = path.with_suffix(".sent")
        if sent_path.exists():
            with contextlib.suppress(ValueError):
                sent = int(sent_path.read_text().strip() or 0)
        meta, body = entries[0], entries[1:]
        next_seq = (body[-1]["seq"] + 1) if body else 1
        return cls(path, meta, fd, sent, [e for e in body if e["seq"] > sent], next_seq)

    # -- write -------------------------------------------------------------------------------
    def _write(self, entry: Entry) -> None:
        line = (json.dumps(entry, separators=(",", ":")) + "\n").encode()
        os.write(self._fd, line)
        os.fsync(self._fd)

    def append(self, kind: str, **fields: Any) -> Entry:
        """Durably append an entry and queue it for sending."""
        entry: Entry = {"seq": self._next_seq, "kind": kind, **fields}
        self._next_seq += 1
        self.pending.append(entry)  # queued before the write: an interrupt in between loses nothing here
        self._write(entry)
        return entry

    def mark_sent(self, upto_seq: int) -> None:
        """Record that every entry up to ``upto_seq`` reached the store."""
        while self.pending and self.pending[0]["seq"] <= upto_seq:
            e = self.pending.popleft()
            if e["kind"] == "artifact":
                _remove(self.files_dir / e["file"])
        self.sent = max(self.sent, upto_seq)
        tmp = self.sent_path.with_name(self.sent_path.name + ".tmp")
        tmp.write_text(str(self.sent))
        os.replace(tmp, self.sent_path)

    def close(self, remove: bool) -> None:
        """Release the lock; with ``remove`` delete the log, its offset and artifact copies."""
        if self._fd >= 0:
            if remove:
                for p in (self.path, self.sent_path):
                    p.unlink(missing_ok=True)
                shutil.rmtree(self.files_dir, ignore_errors=True)
            os.close(self._fd)
            self._fd = -1


def read_entries(path: Path) -> list[Entry]:
    """Parse a log, ignoring a torn last line (a crash mid-write)."""
    out: list[Entry] = []
    with path.open("rb") as f:
        for raw in f:
            try:
                out.append(json.loads(raw))
            except json.JSONDecodeError:
                break
    return out


def leftover_logs(buffer_dir: str | Path) -> list[Path]:
    """Buffer files in ``buffer_dir``, oldest first."""
    d = Path(buffer_dir)
    if not d.is_dir():
        return []
    return sorted(d.glob("*.jsonl"), key=lambda p: (p.stat().st_mtime, p.name))


def _remove(p: Path) -> None:
    if p.is_dir():
        shutil.rmtree(p, ignore_errors=True)
    else:
        p.unlink(missing_ok=True)
    parent = p.parent
    with contextlib.suppress(OSError):
        parent.rmdir()  # the per-entry folder, once empty
