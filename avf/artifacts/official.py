"""Checkpoint files of the official AVF-MAE++ code (XuecWu/AVF-MAE): read, convert, write, load.

Files are read with ``torch.load(weights_only=True)`` only, so a pickle carrying code is refused. The key
mapping itself is ``avf.models.official``; ``avf model import-official`` writes the converted state dict
as safetensors with the kind, size and head in the file metadata (:func:`write_converted`).
"""

from __future__ import annotations

import argparse
import json
import pickle
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file
from torch import Tensor, nn

from avf.artifacts.weights import save_weights
from avf.models import create_model, model_name, strip_prefixes
from avf.models.official import convert_official_state_dict, detect_kind, detect_size

__all__ = ["load_converted", "load_official", "read_checkpoint", "write_converted"]


def read_checkpoint(path: str | Path) -> dict[str, Tensor]:
    """The model state dict of an official checkpoint file (``model`` / ``module`` entry or a bare dict).

    Only ``torch.load(weights_only=True)`` is used (``argparse.Namespace``, which the official trainer
    stores under ``args``, is the one extra type allowed).
    """
    path = Path(path)
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise ValueError(
            f"{path}: refusing to load: the file holds pickled objects other than tensors and plain "
            f"containers (only weights_only=True loading is allowed): {str(exc).splitlines()[0]}"
        ) from exc
    if isinstance(obj, Mapping):
        for key in ("model", "module"):
            if isinstance(obj.get(key), Mapping):
                obj = obj[key]
                break
    if not isinstance(obj, Mapping) or not all(isinstance(v, Tensor) for v in obj.values()):
        raise ValueError(f"{path}: no state dict found (expected a 'model' or 'module' entry of tensors)")
    return dict(obj)


def load_official(path: str | Path, **model_kwargs: Any) -> nn.Module:
    """Build our model from an official checkpoint file and return it in eval mode.

    The kind (pretrain / fine-tune), size and number of classes come from the checkpoint; ``model_kwargs``
    go to ``create_model`` (e.g. ``head_activation`` or ``drop_path``).
    """
    sd = strip_prefixes(read_checkpoint(path))
    kind, size = detect_kind(sd), detect_size(sd)
    ours = convert_official_state_dict(sd, kind, size)
    if kind == "finetune":
        model_kwargs.setdefault("num_classes", int(sd["head.weight"].shape[0]) if "head.weight" in sd else 0)
    model = create_model(model_name(kind, size), **model_kwargs)  # type: ignore[arg-type]
    try:
        model.load_state_dict(ours, strict=True)
    except RuntimeError as exc:
        raise ValueError(f"{path}: converted weights do not fit the model built with {model_kwargs}: {exc}") from exc
    return model.eval()


def write_converted(
    src: str | Path,
    dst: str | Path,
    kind: str = "auto",
    size: str = "auto",
    *,
    outputs: Sequence[str] | None = None,
    task: str = "classification",
    dataset: str | None = None,
) -> dict[str, str]:
    """Convert the official checkpoint ``src`` and write our state dict to ``dst`` (safetensors).

    The file metadata records ``kind``, ``size``, ``model`` (registered name), ``num_classes`` and the
    source file name; with ``outputs`` (the head's class or target names, in head order) also
    ``outputs`` (JSON), ``task`` and ``dataset``. Returns that metadata plus the tensor and value counts.
    """
    sd = strip_prefixes(read_checkpoint(src))
    kind = detect_kind(sd) if kind == "auto" else kind
    size = detect_size(sd) if size == "auto" else size
    ours = convert_official_state_dict(sd, kind, size)
    num_classes = int(ours["head.weight"].shape[0]) if "head.weight" in ours else 0
    meta = {
        "format": "avf",
        "kind": kind,
        "size": size,
        "model": model_name(kind, size),  # type: ignore[arg-type]
        "num_classes": str(num_classes),
        "source": Path(src).name,
    }
    if outputs is not None:
        if kind != "finetune":
            raise ValueError(f"{src}: a {kind} checkpoint has no classification head to name (--dataset/--classes)")
        if len(outputs) != num_classes:
            raise ValueError(
                f"{src}: {len(outputs)} output names given but the checkpoint's head has {num_classes} outputs"
            )
        meta.update({"outputs": json.dumps(list(outputs)), "task": task, **({"dataset": dataset} if dataset else {})})
    tensors = {k: v.detach().contiguous() for k, v in ours.items()}
    save_weights(dst, tensors, metadata=meta)
    return {**meta, "tensors": str(len(tensors)), "parameters": str(sum(v.numel() for v in tensors.values()))}


def load_converted(path: str | Path, **model_kwargs: Any) -> nn.Module:
    """Build the model recorded in a file written by ``write_converted`` and load it (eval mode)."""
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
    if meta.get("format") != "avf" or "model" not in meta:
        raise ValueError(f"{path}: not written by 'avf model import-official' (metadata {meta})")
    if meta.get("kind") == "finetune":
        model_kwargs.setdefault("num_classes", int(meta.get("num_classes", 0)))
    model = create_model(meta["model"], **model_kwargs)
    model.load_state_dict(load_file(str(path)), strict=True)
    return model.eval()
