"""The on-disk write-ahead log of run data, and its replay to the tracking store.

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
import logging
import os
import shutil
import time
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from avf.tracking.store import (
    TrackingAuthError,
    TrackingUnavailableError,
    auth_errors,
    is_transient,
    mlflow_client,
    project_dir,
    reachable,
)

if TYPE_CHECKING:
    from mlflow import MlflowClient

log = logging.getLogger(__name__)

DEFAULT_BUFFER_DIR = "runs/mlflow-buffer"
BUFFER_DIR_ENV = "AVF_MLFLOW_BUFFER_DIR"  # where the write-ahead buffer lives

# MLflow's log_batch limits (mlflow.utils.validation).
MAX_METRICS_PER_BATCH = 1000
MAX_PARAMS_TAGS_PER_BATCH = 100
MAX_ENTITIES_PER_BATCH = 1000

BATCHABLE = frozenset({"metrics", "params", "tags"})
FORMAT_VERSION = 1

Entry = dict[str, Any]


def now_ms() -> int:
    return int(time.time() * 1000)


def resolve_buffer_dir(path: str | Path | None) -> Path:
    """``path``, else ``$AVF_MLFLOW_BUFFER_DIR``, else ``runs/mlflow-buffer``; absolute (under :func:`project_dir`)."""
    return (project_dir() / (path or os.environ.get(BUFFER_DIR_ENV) or DEFAULT_BUFFER_DIR)).resolve()


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


# ---------------------------------------------------------------------------------------------
# sending buffered entries
# ---------------------------------------------------------------------------------------------
def _send(client: MlflowClient, run_id: str, group: list[Entry], files_dir: Path) -> None:
    """Send one group from :func:`batches` to the store (:class:`TrackingAuthError` for a 401 / 403)."""
    with auth_errors(str(client.tracking_uri)):
        _send_group(client, run_id, group, files_dir)


def _send_group(client: MlflowClient, run_id: str, group: list[Entry], files_dir: Path) -> None:
    from mlflow.entities import Metric, Param, RunTag

    kind = group[0]["kind"]
    if kind in ("metrics", "params", "tags"):
        metrics, params, tags = [], [], []
        for e in group:
            if e["kind"] == "metrics":
                metrics += [Metric(k, float(v), e["ts"], e["step"]) for k, v in e["data"].items()]
            elif e["kind"] == "params":
                params += [Param(k, v) for k, v in e["data"].items()]
            else:
                tags += [RunTag(k, v) for k, v in e["data"].items()]
        client.log_batch(run_id, metrics=metrics, params=params, tags=tags)
    elif kind == "artifact":
        e = group[0]
        local = files_dir / e["file"]
        if local.is_dir():
            client.log_artifacts(run_id, str(local), e.get("artifact_path"))
        else:
            client.log_artifact(run_id, str(local), e.get("artifact_path"))
    elif kind == "dataset":
        e = group[0]
        client.log_inputs(run_id, datasets=[_dataset_input(e)])
    elif kind == "end":
        e = group[0]
        client.set_terminated(run_id, e["status"], end_time=e["ts"])
    else:  # pragma: no cover - written only by this module
        raise ValueError(f"unknown buffer entry kind {kind!r}")


def _dataset_input(e: Entry) -> Any:
    from mlflow.data.meta_dataset import MetaDataset
    from mlflow.entities import DatasetInput, InputTag

    source_uri = e["source"]
    if source_uri.startswith(("http://", "https://")):
        from mlflow.data.http_dataset_source import HTTPDatasetSource

        source: Any = HTTPDatasetSource(url=source_uri)
    else:
        from mlflow.data.sources import LocalArtifactDatasetSource

        source = LocalArtifactDatasetSource(source_uri)
    ds = MetaDataset(source=source, name=e["name"], digest=e["digest"])
    return DatasetInput(dataset=ds._to_mlflow_entity(), tags=[InputTag("mlflow.data.context", e["context"])])


def _keep_queued(exc: Exception) -> bool:
    """Stop replaying and keep the entries: an outage, or credentials / permissions the server refuses."""
    return is_transient(exc) or isinstance(exc, TrackingAuthError)


def replay(client: MlflowClient, wal: WriteAheadLog) -> list[tuple[Entry, Exception]]:
    """Send every pending entry in order. Raises the first transient error or :class:`TrackingAuthError`
    (the rest stays queued); returns the entries the store rejected (they are dropped, and logged as errors)."""
    rejected: list[tuple[Entry, Exception]] = []
    while wal.pending:
        group = next(batches(iter(wal.pending)))  # lazily: only the first group is read
        try:
            _send(client, wal.run_id, group, wal.files_dir)
        except Exception as exc:
            if _keep_queued(exc):
                raise
            if len(group) > 1:  # find the culprit: resend entry by entry
                for e in group:
                    try:
                        _send(client, wal.run_id, [e], wal.files_dir)
                    except Exception as exc1:
                        if _keep_queued(exc1):
                            raise
                        rejected.append((e, exc1))
                        log.error("MLflow rejected %s entry %d of run %s: %s", e["kind"], e["seq"], wal.run_id, exc1)
                    wal.mark_sent(e["seq"])
                continue
            rejected.append((group[0], exc))
            log.error("MLflow rejected %s entry %d of run %s: %s", group[0]["kind"], group[0]["seq"], wal.run_id, exc)
        wal.mark_sent(group[-1]["seq"])
    return rejected


def flush_worker_logs(client: MlflowClient, own: WriteAheadLog) -> None:
    """Before the owner ends a run, replay buffers that exited writers (Ray workers) left for it. Those the
    store cannot take now stay for ``avf registry flush-buffer``."""
    for path in leftover_logs(own.path.parent):
        if path == own.path or not path.name.startswith(own.run_id + "."):
            continue
        try:
            wal = WriteAheadLog.open_existing(path)
        except (OSError, ValueError):
            continue
        if wal is None or wal.owner:
            if wal is not None:
                wal.close(remove=False)
            continue
        try:
            replay(client, wal)
        except Exception as exc:
            wal.close(remove=False)
            if not _keep_queued(exc):
                raise
            return
        wal.close(remove=True)


# ---------------------------------------------------------------------------------------------
# leftover buffers
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class BufferReport:
    """What ``flush_buffers`` did with one buffer file."""

    path: Path
    run_id: str
    state: str  # flushed | live | unreachable | error
    sent: int = 0
    left: int = 0
    end_status: str | None = None
    message: str = ""


def flush_buffers(buffer_dir: str | Path | None = None, tracking_uri: str | None = None) -> list[BufferReport]:
    """Replay leftover write-ahead buffers (a run whose server was down at its end, or whose
    process died) and finish their runs. Logs held by a live process are skipped.

    A log whose owner died without an end record ends KILLED (if its run is still RUNNING).
    ``tracking_uri`` overrides the URI recorded in each log.
    """
    bdir = Path(buffer_dir or os.environ.get(BUFFER_DIR_ENV) or DEFAULT_BUFFER_DIR)
    reports: list[BufferReport] = []
    for path in leftover_logs(bdir):
        try:
            wal = WriteAheadLog.open_existing(path)
        except (OSError, ValueError) as exc:
            reports.append(BufferReport(path, "?", "error", message=str(exc)))
            continue
        if wal is None:
            reports.append(BufferReport(path, path.name.split(".")[0], "live", message="held by a running process"))
            continue
        uri = tracking_uri or str(wal.meta["tracking_uri"])
        before = len(wal.pending)
        end = next((e["status"] for e in wal.pending if e["kind"] == "end"), None)
        try:
            if not reachable(uri):
                raise TrackingUnavailableError(f"{uri} is unreachable")
            client = mlflow_client(uri)
            rejected = replay(client, wal)
            if end is None and wal.owner:
                with auth_errors(uri):
                    run = client.get_run(wal.run_id)
                    if run.info.status == "RUNNING":
                        client.set_tag(wal.run_id, "avf.end_reason", "writer died; finished from its buffer")
                        client.set_terminated(wal.run_id, "KILLED")
                        end = "KILLED"
        except Exception as exc:
            # refused credentials hold for every buffer: say so once instead of reporting each "unreachable"
            if isinstance(exc, TrackingAuthError) or not (
                is_transient(exc) or isinstance(exc, TrackingUnavailableError)
            ):
                wal.close(remove=False)
                raise
            reports.append(
                BufferReport(
                    path, wal.run_id, "unreachable", before - len(wal.pending), len(wal.pending), None, str(exc)
                )
            )
            wal.close(remove=False)
            continue
        wal.close(remove=True)
        msg = f"{len(rejected)} entries rejected" if rejected else ""
        reports.append(BufferReport(path, wal.run_id, "flushed", before, 0, end, msg))
    return reports
