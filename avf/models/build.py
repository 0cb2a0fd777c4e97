"""Registered names and construction: ``create_model(model_name(kind, size), **kwargs)`` (never downloads)."""

from __future__ import annotations

from typing import Any, Literal

import timm
from torch import nn

import avf.models.avf_vit  # noqa: F401  (registers the fine-tuning variants with timm)
from avf.models.avf_mae_pp import SIZES  # (registers the pretraining variants)

__all__ = ["Kind", "create_model", "model_name"]

Kind = Literal["pretrain", "finetune"]


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
        raise ValueError("no hosted weights: import official checkpoints with avf.artifacts.official")
    if not name.startswith("avf_mae_pp_"):
        raise ValueError(f"{name!r} is not an AVF-MAE++ model; known: {timm.list_models('avf_mae_pp_*')}")
    return timm.create_model(name, pretrained=False, **kwargs)
