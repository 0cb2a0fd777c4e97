"""Weights on disk: safetensors only (no pickle), always a contiguous CPU copy of the unwrapped model."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from avf.utils.io import atomic_path

__all__ = ["load_weights", "save_weights", "state_dict_tensors", "unwrap"]


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The module under DDP / torch.compile wrappers."""
    while True:
        if hasattr(model, "module") and isinstance(model.module, torch.nn.Module):
            model = model.module
        elif hasattr(model, "_orig_mod"):
            model = model._orig_mod
        else:
            return model


def state_dict_tensors(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A contiguous, unshared CPU copy of the model's state dict (safe for safetensors)."""
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in unwrap(model).state_dict().items()}


def save_weights(
    path: str | Path, model: torch.nn.Module | dict[str, torch.Tensor], metadata: dict[str, str] | None = None
) -> None:
    sd = model if isinstance(model, dict) else state_dict_tensors(model)
    with atomic_path(path) as tmp:
        save_file({k: v.contiguous() for k, v in sd.items()}, str(tmp), metadata=metadata)


def load_weights(path: str | Path) -> dict[str, torch.Tensor]:
    return load_file(str(path))
