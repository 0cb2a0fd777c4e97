"""What the training loop needs from whoever runs it: rank, device, DDP wrapping, reporting, restore.

``LocalSession`` runs in-process on one device (tests, debugging); ``avf.runtime.ray_train`` provides the
Ray Train implementation. The loop never imports Ray or MLflow.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

import torch


class Session(Protocol):
    rank: int
    world_size: int
    local_world_size: int  # ranks on this node (they share its /dev/shm)
    device: torch.device

    def prepare_model(self, model: torch.nn.Module) -> torch.nn.Module: ...

    def report(self, metrics: dict[str, Any], checkpoint_dir: Path | None) -> None: ...

    def restored_checkpoint(self) -> contextlib.AbstractContextManager[Path | None]: ...

    def all_gather_object(self, obj: Any) -> list[Any]: ...


class LocalSession:
    """Single-process session; keeps the newest ``keep`` checkpoints in ``checkpoint_root`` and resumes
    from the newest one found there (so an interrupted in-process run continues where it stopped)."""

    rank = 0
    world_size = 1
    local_world_size = 1

    def __init__(self, checkpoint_root: Path | None = None, device: str | torch.device = "cpu", keep: int = 2) -> None:
        self.device = torch.device(device)
        self.checkpoint_root = Path(checkpoint_root or tempfile.mkdtemp(prefix="avf-ckpt-"))
        self.checkpoint_root.mkdir(parents=True, exist_ok=True)
        self.keep = keep
        existing = sorted(self.checkpoint_root.glob("checkpoint_*[0-9]"))
        self.latest: Path | None = existing[-1] if existing else None
        self.reports: list[dict[str, Any]] = []

    def prepare_model(self, model: torch.nn.Module) -> torch.nn.Module:
        return model.to(self.device)

    def report(self, metrics: dict[str, Any], checkpoint_dir: Path | None) -> None:
        self.reports.append(dict(metrics))
        if checkpoint_dir is None:
            return
        dest = self.checkpoint_root / f"checkpoint_{int(metrics.get('step', len(self.reports))):09d}"
        tmp = dest.with_name(dest.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(checkpoint_dir, tmp)
        shutil.rmtree(dest, ignore_errors=True)
        tmp.rename(dest)
        self.latest = dest
        for old in sorted(self.checkpoint_root.glob("checkpoint_*[0-9]"))[: -self.keep]:
            shutil.rmtree(old, ignore_errors=True)

    @contextlib.contextmanager
    def _restored(self) -> Iterator[Path | None]:
        yield self.latest

    def restored_checkpoint(self) -> contextlib.AbstractContextManager[Path | None]:
        return self._restored()

    def all_gather_object(self, obj: Any) -> list[Any]:
        return [obj]
