"""Weights on disk: safetensors only (no pickle), always a contiguous CPU copy of the unwrapped model."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save

from avf.utils.io import atomic_path

__all__ = ["load_weights", "save_weights", "stable_bytes", "state_dict_tensors", "unwrap"]


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


def stable_bytes(blob: bytes) -> bytes:
    """A safetensors file with its JSON header's keys sorted.

    safetensors keeps ``__metadata__`` in a hash map whose order changes from process to process, so the
    same weights and metadata gave different bytes (a new DVC hash for an unchanged model) whenever the
    metadata had two keys or more. Tensor offsets are relative to the data section, which is unchanged:
    the sorted header has the same length and is padded the same way.
    """
    n = int.from_bytes(blob[:8], "little")
    header = json.dumps(json.loads(blob[8 : 8 + n]), sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    if len(header) > n:  # serde_json and this dump escape alike, so sorting cannot lengthen it
        raise ValueError(f"safetensors header grew from {n} to {len(header)} bytes when sorted")
    return blob[:8] + header.ljust(n, b" ") + blob[8 + n :]


def save_weights(
    path: str | Path, model: torch.nn.Module | dict[str, torch.Tensor], metadata: dict[str, str] | None = None
) -> None:
    """Write ``model``'s tensors (or a name -> tensor dict) to ``path`` atomically, byte-identical for equal input."""
    sd = model if isinstance(model, dict) else state_dict_tensors(model)
    blob = stable_bytes(save({k: v.contiguous() for k, v in sd.items()}, metadata=metadata))
    with atomic_path(path) as tmp:
        tmp.write_bytes(blob)


def load_weights(path: str | Path) -> dict[str, torch.Tensor]:
    return load_file(str(path))
