"""The AVF-MAE++ model family (timm-registered) and its public API.

* ``create_model(name, **kw)``: any registered name, e.g. ``avf_mae_pp_pretrain_base`` or
  ``avf_mae_pp_tiny`` (see ``model_name``). Never downloads weights.
* ``init_finetune_from_pretrain(model, state_dict)``: copy encoders and IAVCL from a pretraining state dict.
* ``load_official`` / ``convert_official_state_dict``: import checkpoints saved by XuecWu/AVF-MAE.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import timm
import torch
from torch import Tensor, nn

from avf.models.avf_mae_pp import SIZES, AVFMAEPretrain, PretrainOutput
from avf.models.avf_vit import AVFViT
from avf.models.official import convert_official_state_dict, load_official, to_official_state_dict

__all__ = [
    "SIZES",
    "AVFMAEPretrain",
    "AVFViT",
    "PretrainOutput",
    "convert_official_state_dict",
    "create_model",
    "init_finetune_from_pretrain",
    "load_official",
    "model_name",
    "strip_prefixes",
    "to_official_state_dict",
]

Kind = Literal["pretrain", "finetune"]
PRETRAIN_ONLY_PREFIXES = ("video_decoder.", "audio_decoder.")


def model_name(kind: Kind, size: str) -> str:
    """Registered name: ``model_name("pretrain", "base") == "avf_mae_pp_pretrain_base"``."""
    if size not in SIZES:
        raise ValueError(f"unknown size {size!r}; choose one of {sorted(SIZES)}")
    if kind == "pretrain":
        return f"avf_mae_pp_pretrain_{size}"
    if kind == "finetune":
        return f"avf_mae_pp_{size}"
    raise ValueError(f"kind must be 'pretrain' or 'finetune', got {kind!r}")


def create_model(name: str, **kwargs: Any) -> nn.Module:
    """Build a registered AVF-MAE++ model (``pretrained`` is always False: no hub access)."""
    if kwargs.pop("pretrained", False):
        raise ValueError("no hosted weights: use avf.models.load_official or init_finetune_from_pretrain")
    if not name.startswith("avf_mae_pp_"):
        raise ValueError(f"{name!r} is not an AVF-MAE++ model; known: {timm.list_models('avf_mae_pp_*')}")
    return timm.create_model(name, pretrained=False, **kwargs)


def strip_prefixes(state_dict: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Drop the ``module.`` (DDP) and ``_orig_mod.`` (torch.compile) prefixes from every key."""
    out = {}
    for key, value in state_dict.items():
        for prefix in ("module.", "_orig_mod."):
            while key.startswith(prefix):
                key = key[len(prefix) :]
        out[key.replace("._orig_mod.", ".")] = value
    return out


def init_finetune_from_pretrain(model: nn.Module, state_dict: Mapping[str, Tensor]) -> dict[str, list[str]]:
    """Load the shared encoder and IAVCL weights of a pretraining state dict (ours) into ``model``.

    Decoder weights (decoders, mask tokens, ``encoder_to_decoder``, all under ``video_decoder.`` /
    ``audio_decoder.``) are dropped; everything else is loaded non-strictly.

    Returns:
        ``{"dropped": [...], "missing": [...], "unexpected": [...]}``; ``missing`` normally lists the new
        fine-tuning parts (layer weights, ``fc_norm``, ``head``).

    Raises:
        ValueError: a shared key has a different shape (e.g. a different size or depth).
    """
    sd = strip_prefixes(state_dict)
    dropped = sorted(k for k in sd if k.startswith(PRETRAIN_ONLY_PREFIXES))
    sd = {k: v for k, v in sd.items() if not k.startswith(PRETRAIN_ONLY_PREFIXES)}
    own = model.state_dict()
    bad = [
        f"{k}: checkpoint {tuple(v.shape)} vs model {tuple(own[k].shape)}"
        for k, v in sd.items()
        if k in own and own[k].shape != v.shape
    ]
    if bad:
        raise ValueError("shape mismatch between the pretraining state dict and the model:\n  " + "\n  ".join(bad))
    with torch.no_grad():
        result = model.load_state_dict(sd, strict=False)
    return {"dropped": dropped, "missing": sorted(result.missing_keys), "unexpected": sorted(result.unexpected_keys)}
