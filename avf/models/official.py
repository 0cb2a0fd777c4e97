"""Import checkpoints saved by the official AVF-MAE++ code (XuecWu/AVF-MAE).

The official state dicts (``checkpoint["model"]`` or ``checkpoint["module"]``) use the upstream module
names (``encoder.blocks.3.first_attn.q.weight``, ``encoder_fusion.Iterative_Refinement_Module...``). The
mapping below is derived from the published key layout; self-attentions inside the LG blocks store q and
kv separately upstream and are fused into one ``qkv`` weight here. The conversion is strict: an unknown,
missing or mis-shaped key raises ``ValueError`` naming the key. Reading and writing checkpoint files is
``avf.artifacts.official``'s job.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from avf.models.avf_mae_pp import SIZES
from avf.models.build import create_model, model_name
from avf.models.transfer import strip_prefixes

__all__ = [
    "convert_official_state_dict",
    "detect_kind",
    "detect_size",
    "official_key",
    "to_official_state_dict",
]

LG_BLOCK = {
    "intra_norm": "first_attn_norm0",
    "intra_attn": "first_attn",
    "inter_norm": "second_attn_norm0",
    "inter_attn": "second_attn",
    "local_norm": "third_attn_norm0",
    "local_ctx_norm": "third_attn_norm1",
    "local_attn": "third_attn",
    "region_norm": "fourth_attn_norm0",
    "region_ctx_norm": "fourth_attn_norm1",
    "region_attn": "fourth_attn",
    "mlp_norm": "norm2",
    "mlp": "mlp",
}
LG_FUSED = ("intra_attn", "inter_attn")  # self-attentions stored as separate q / kv upstream
DIER = {
    "video": {
        "sa_norm": "norm1",
        "sa": "attn",
        "sa_mlp_norm": "norm_vsa",
        "sa_mlp": "mlp_vsa",
        "ca_norm": "cross_norm1",
        "ca_ctx_norm": "cross_norm2",
        "ca": "cross_attn",
        "ca_mlp_norm": "norm_vcma",
        "ca_mlp": "mlp_vcma",
        "gate1": "lv1",
        "gate2": "lv2",
        "out_norm": "norm3",
    },
    "audio": {
        "sa_norm": "norm_new",
        "sa": "attn_new",
        "sa_mlp_norm": "norm_asa",
        "sa_mlp": "mlp_asa",
        "ca_norm": "cross_norm1_a",
        "ca_ctx_norm": "cross_norm2_a",
        "ca": "cross_attn_a",
        "ca_mlp_norm": "norm_acma",
        "ca_mlp": "mlp_acma",
        "gate1": "la1",
        "gate2": "la2",
        "out_norm": "norm3_1",
    },
}
ER = {"proj": "post_extract_proj", "audio_refine": "conv_audio", "video_refine": "conv_video", "norm": "layer_norm"}
HAFE = {
    "video": {
        "stage_norm": "norm",
        "stage_attn": "vadaptiveinteraction",
        "stage_mlp_norm": "norm_att_v",
        "stage_mlp": "mlp_att_v",
        "select": "vselectfusion",
        "q_norm": "cross_norm_1",
        "mlp_norm": "norm_att_v_IR",
        "mlp": "mlp_att_video_IR",
    },
    "audio": {
        "stage_norm": "norm_audio",
        "stage_attn": "aadaptiveinteraction",
        "stage_mlp_norm": "norm_att_a",
        "stage_mlp": "mlp_att_a",
        "select": "aselectfusion",
        "q_norm": "cross_norm_3",
        "mlp_norm": "norm_att_a_IR",
        "mlp": "mlp_att_audio_IR",
    },
    "shared": {"ctx_norm": "cross_norm_2", "ctx_attn": "cross_attn"},
}
DECODER_BLOCK = {"cross_norm": "cross_norm1", "cross_ctx_norm": "cross_norm2"}
TOP_LEVEL = {"fc_norm", "head", "layer_weights_video", "layer_weights_audio"}


def _lookup(table: Mapping[str, str], name: str, key: str) -> str:
    if name not in table:
        raise ValueError(f"no official counterpart for parameter {key!r}")
    return table[name]


def official_key(key: str) -> str | tuple[str, str]:
    """Official name of one of our state-dict keys; a ``(q, kv)`` pair for fused LG self-attention."""
    parts = key.split(".")
    head, rest = parts[0], parts[1:]
    if head in ("video_encoder", "audio_encoder"):
        prefix = "encoder" if head == "video_encoder" else "encoder_audio"
        if rest == ["region_tokens"]:
            return f"{prefix}.lg_region_tokens"
        if rest[0] == "blocks":
            idx, mod, tail = rest[1], rest[2], rest[3:]
            base = f"{prefix}.blocks.{idx}.{_lookup(LG_BLOCK, mod, key)}"
            if mod in LG_FUSED and tail == ["qkv", "weight"]:
                return f"{base}.q.weight", f"{base}.kv.weight"
            return ".".join([base, *tail])
        if rest[0] in ("patch_embed", "norm"):
            return ".".join([prefix, *rest])
    elif head == "fusion":
        if rest[0] == "units":
            idx, branch, mod, tail = rest[1], rest[2], rest[3], rest[4:]
            return ".".join([f"encoder_fusion.blocks.{idx}", _lookup(DIER.get(branch, {}), mod, key), *tail])
        if rest[0] == "er":
            return ".".join(["encoder_fusion.Iterative_Refinement_Module", _lookup(ER, rest[1], key), *rest[2:]])
        if rest[0] == "hafe":
            if rest[1] in ("video", "audio"):
                return ".".join(["encoder_fusion", _lookup(HAFE[rest[1]], rest[2], key), *rest[3:]])
            return ".".join(["encoder_fusion", _lookup(HAFE["shared"], rest[1], key), *rest[2:]])
    elif head in ("video_decoder", "audio_decoder"):
        sfx = "" if head == "video_decoder" else "_audio"
        if rest[0] == "embed":
            return ".".join([f"encoder_to_decoder{sfx}", *rest[1:]])
        if rest == ["mask_token"]:
            return f"mask_token{sfx}"
        if rest[0] == "blocks":
            return ".".join([f"decoder{sfx}.blocks", rest[1], DECODER_BLOCK.get(rest[2], rest[2]), *rest[3:]])
        if rest[0] in ("norm", "head"):
            return ".".join([f"decoder{sfx}", *rest])
    elif head in TOP_LEVEL:
        return key
    raise ValueError(f"no official counterpart for parameter {key!r}")


def to_official_state_dict(state_dict: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Our state dict laid out like the official one (the inverse of ``convert_official_state_dict``)."""
    out: dict[str, Tensor] = {}
    for key, value in state_dict.items():
        name = official_key(key)
        if isinstance(name, tuple):
            dim = value.shape[1]
            out[name[0]], out[name[1]] = value[:dim].clone(), value[dim:].clone()
        else:
            out[name] = value
    return out


def detect_kind(state_dict: Mapping[str, Tensor]) -> str:
    """``"pretrain"`` when decoder weights are present, ``"finetune"`` otherwise."""
    if "encoder.patch_embed.proj.weight" not in state_dict:
        raise ValueError("not an AVF-MAE++ checkpoint: key 'encoder.patch_embed.proj.weight' is missing")
    return "pretrain" if any(k.startswith(("decoder.", "decoder_audio.")) for k in state_dict) else "finetune"


def detect_size(state_dict: Mapping[str, Tensor]) -> str:
    """Registered size whose width and depth match ``encoder.patch_embed.proj.weight`` and the block count."""
    width = int(state_dict["encoder.patch_embed.proj.weight"].shape[0])
    blocks = {int(m.group(1)) for k in state_dict if (m := re.match(r"encoder\.blocks\.(\d+)\.", k))}
    depth = max(blocks) + 1 if blocks else 0
    for name, size in SIZES.items():
        if size.dim == width and size.depth == depth:
            return name
    known = ", ".join(f"{n} (C={s.dim}, depth={s.depth})" for n, s in SIZES.items())
    raise ValueError(f"no registered size has width {width} and depth {depth}; known: {known}")


@functools.lru_cache(maxsize=16)
def _expected_state(kind: str, size: str, num_classes: int) -> dict[str, tuple[int, ...]]:
    """Key -> shape of our model, built on the meta device (no memory, fast for every size); cached."""
    kwargs: dict[str, Any] = {"num_classes": num_classes} if kind == "finetune" else {}
    with torch.device("meta"):
        model = create_model(model_name(kind, size), **kwargs)  # type: ignore[arg-type]
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def convert_official_state_dict(
    state_dict: Mapping[str, Tensor], kind: str = "auto", size: str = "auto"
) -> dict[str, Tensor]:
    """Convert an official state dict (pretraining or fine-tuning) into ours.

    Args:
        state_dict: the official model state dict (``module.`` prefixes are stripped).
        kind: ``"pretrain"``, ``"finetune"`` or ``"auto"`` (decoders present -> pretrain).
        size: ``"base"``, ``"large"``, ``"huge"`` (``"tiny"`` too) or ``"auto"`` (from width and depth).

    Raises:
        ValueError: naming the first unknown, missing or mis-shaped key.
    """
    sd = strip_prefixes(state_dict)
    kind = detect_kind(sd) if kind == "auto" else kind
    if kind not in ("pretrain", "finetune"):
        raise ValueError(f"kind must be 'pretrain', 'finetune' or 'auto', got {kind!r}")
    size = detect_size(sd) if size == "auto" else size
    num_classes = int(sd["head.weight"].shape[0]) if kind == "finetune" and "head.weight" in sd else 0
    expected = _expected_state(kind, size, num_classes)
    out: dict[str, Tensor] = {}
    used: set[str] = set()
    for key, shape in expected.items():
        name = official_key(key)
        sources = name if isinstance(name, tuple) else (name,)
        for src in sources:
            if src not in sd:
                raise ValueError(f"official checkpoint ({kind}, {size}) is missing key {src!r} (for {key!r})")
        value = torch.cat([sd[s] for s in sources]) if len(sources) > 1 else sd[sources[0]]
        if tuple(value.shape) != shape:
            raise ValueError(
                f"official key {'+'.join(sources)!r} has shape {tuple(value.shape)}, expected {shape} for {key!r} "
                f"({kind}, {size})"
            )
        out[key] = value
        used.update(sources)
    unknown = sorted(set(sd) - used)
    if unknown:
        raise ValueError(f"unknown key(s) in the official {kind} checkpoint ({size}): {unknown[:10]}")
    return out
