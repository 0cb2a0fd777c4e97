"""State-dict hand-offs between stages: wrapper prefixes and stage-1 weights into a fine-tuning model."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

__all__ = ["PRETRAIN_ONLY_PREFIXES", "init_finetune_from_pretrain", "strip_prefixes"]

PRETRAIN_ONLY_PREFIXES = ("video_decoder.", "audio_decoder.")


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
