"""The stage's real Task, recording which clips each rank trains on: one JSON line per micro-batch
(``{"epoch", "keys", "remote", "jpeg"}``: whether Ray tasks decoded it, whether its frames came undecoded) in
``record_dir/rank{R}.jsonl``. Used through the worker's ``task_factory`` hook."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from avf.config import Params
from avf.train.session import Session
from avf.train.worker import build_task


class RecordingTask:
    def __init__(self, task: Any, record: Path) -> None:
        self.task, self.record = task, record

    def __getattr__(self, name: str) -> Any:
        return getattr(self.task, name)

    def train_batches(self, epoch: int, start_micro_step: int) -> Iterable[Any]:
        with self.record.open("a") as f:
            for batch in self.task.train_batches(epoch, start_micro_step):
                remote = getattr(self.task, "remote", None) is not None
                row = {"epoch": epoch, "keys": list(batch["key"]), "remote": remote, "jpeg": "jpeg" in batch}
                f.write(json.dumps(row) + "\n")
                f.flush()
                yield batch


def build(config: dict[str, Any], params: Params, session: Session) -> RecordingTask:
    task = build_task({k: v for k, v in config.items() if k != "task_factory"}, params, session)
    record = Path(config["record_dir"]) / f"rank{session.rank}.jsonl"
    record.parent.mkdir(parents=True, exist_ok=True)
    return RecordingTask(task, record)


def recorded(record_dir: Path) -> tuple[dict[int, list[list[str]]], set[tuple[bool, bool]]]:
    """Micro-batches per epoch, all ranks together (in file order per rank), and the set of their
    ``(remote, jpeg)`` flags."""
    epochs: dict[int, list[list[str]]] = {}
    flags: set[tuple[bool, bool]] = set()
    for path in sorted(record_dir.glob("rank*.jsonl")):
        for line in path.read_text().splitlines():
            row = json.loads(line)
            epochs.setdefault(row["epoch"], []).append(row["keys"])
            flags.add((row["remote"], row["jpeg"]))
    return epochs, flags
