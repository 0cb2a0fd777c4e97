"""Checkpoints without pickle: tensors in safetensors, everything else in JSON.

A training checkpoint directory holds ``model.safetensors`` (weights), ``optimizer.safetensors``
(flattened optimizer state tensors), ``state.json`` (loop position, optimizer param groups, scheduler,
grad-scaler and RNG-free metadata) and optionally ``selected.safetensors`` (the exported
weights) and ``ema.safetensors`` (the EMA weights, when the run keeps an EMA).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from avf.artifacts.weights import state_dict_tensors, unwrap
from avf.utils.io import atomic_path


def _flatten_optimizer(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    sd = opt.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for pid, st in sd["state"].items():
        for name, value in st.items():
            if torch.is_tensor(value):
                tensors[f"{pid}.{name}"] = value.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(pid), {})[name] = value
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        pid, name = key.split(".", 1)
        state.setdefault(int(pid), {})[name] = value
    for pid, values in meta.get("scalars", {}).items():
        state.setdefault(int(pid), {}).update(values)
    return {"state": state, "param_groups": meta["param_groups"]}


def save_training_state(
    directory: str | Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    scaler: torch.amp.GradScaler | None,
    loop_state: dict[str, Any],
    selected: dict[str, torch.Tensor] | None = None,
    ema: dict[str, torch.Tensor] | None = None,
) -> Path:
    """Write a resumable checkpoint into ``directory`` (created atomically); ``ema``: the EMA weights."""
    directory = Path(directory)
    with atomic_path(directory) as tmp:
        tmp.mkdir()
        save_file(state_dict_tensors(model), str(tmp / "model.safetensors"))
        opt_tensors, opt_meta = _flatten_optimizer(optimizer)
        save_file(opt_tensors, str(tmp / "optimizer.safetensors"))
        if selected is not None:
            save_file(selected, str(tmp / "selected.safetensors"))
        if ema is not None:
            save_file(ema, str(tmp / "ema.safetensors"))
        state = {
            "loop": loop_state,
            "optimizer": opt_meta,
            "scheduler": scheduler.state_dict() if scheduler is not None else None,
            "scaler": scaler.state_dict() if scaler is not None else None,
        }
        (tmp / "state.json").write_text(json.dumps(state, default=float))
    return directory


def load_training_state(
    directory: str | Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    scaler: torch.amp.GradScaler | None,
) -> tuple[dict[str, Any], dict[str, torch.Tensor] | None]:
    """Restore a checkpoint written by :func:`save_training_state`; returns (loop state, selected weights)."""
    directory = Path(directory)
    state = json.loads((directory / "state.json").read_text())
    unwrap(model).load_state_dict(load_file(str(directory / "model.safetensors")))
    optimizer.load_state_dict(
        _unflatten_optimizer(load_file(str(directory / "optimizer.safetensors")), state["optimizer"])
    )
    if scheduler is not None and state.get("scheduler"):
        scheduler.load_state_dict(state["scheduler"])
    if scaler is not None and state.get("scaler"):
        scaler.load_state_dict(state["scaler"])
    selected_path = directory / "selected.safetensors"
    selected = load_file(str(selected_path)) if selected_path.exists() else None
    return state["loop"], selected


def load_ema_weights(directory: str | Path) -> dict[str, torch.Tensor] | None:
    """The EMA weights saved with a training checkpoint (None when it had no EMA)."""
    path = Path(directory) / "ema.safetensors"
    return load_file(str(path)) if path.exists() else None


def is_complete_checkpoint(directory: Path) -> bool:
    """Whether a training checkpoint folder was written whole: ``state.json`` parses and every
    safetensors file is as long as its header says (a copy cut off by a kill fails this)."""
    import struct

    try:
        json.loads((directory / "state.json").read_text())
        required, optional = ("model.safetensors", "optimizer.safetensors"), ("selected.safetensors", "ema.safetensors")
        if not all((directory / f).exists() for f in required):
            return False
        for path in [directory / f for f in (*required, *optional) if (directory / f).exists()]:
            with path.open("rb") as fh:
                (n,) = struct.unpack("<Q", fh.read(8))
                header = json.loads(fh.read(n))
            end = max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"), default=0)
            if path.stat().st_size != 8 + n + end:
                return False
    except (OSError, ValueError, KeyError, struct.error):
        return False
    return True


def newest_complete_checkpoint(run_dir: Path) -> Path | None:
    """The newest whole ``checkpoint_*`` folder of a run (names sort by time: step numbers or Ray's timestamps)."""
    for d in sorted(run_dir.glob("checkpoint_*"), reverse=True):
        if d.is_dir() and not d.name.endswith(".tmp") and is_complete_checkpoint(d):
            return d
    return None
