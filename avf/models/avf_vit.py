"""AVF-MAE++ fine-tuning model (audio-visual classifier / regressor), spec section 8.

Forward: both LG encoders over every token -> per-layer region tokens ``[B, K, L, C]`` (after the final
LN) -> softmax layer weighting per modality gives the global tokens ``F [B, K, 2C]`` -> IAVCL over the
last layer's region tokens (video region i paired with audio region i: the same 0.64 s window) ->
``[mean V^; mean A^]`` (2C) -> LN -> Linear(K) -> optional activation.

``forward_features`` returns the pooled 2C features before ``fc_norm``; a multi-head trainer builds the
backbone with ``num_classes=0, fc_norm=False`` (no parameter left unused, as DDP requires) and puts
``nn.Sequential(nn.LayerNorm(2C, eps=1e-6), nn.Linear(2C, K))`` per dataset on top, which is exactly this
model's own head.

Without the LG block's fourth step, the last block's local tokens are read by nothing: its step 3 (local
tokens read the regions) is skipped and its parameters are frozen (kept in the state dict, so checkpoints of
every variant share one layout, but never trained and never seen by DDP).

Registered variants (``timm.create_model``): ``avf_mae_pp_{tiny,base,large,huge}``.
"""

from __future__ import annotations

from typing import Any

import torch
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model
from torch import Tensor, nn

from avf.models.avf_mae_pp import SIZES, encoder_group_matcher, init_weights
from avf.models.encoders import audio_encoder, video_encoder
from avf.models.iavcl import IAVCL
from avf.models.layers import LayerNorm

__all__ = ["HEAD_ACTIVATIONS", "AVFViT"]

HEAD_ACTIVATIONS: dict[str | None, type[nn.Module]] = {
    None: nn.Identity,
    "sigmoid": nn.Sigmoid,
    "tanh": nn.Tanh,
    "relu": nn.ReLU,
}


class AVFViT(nn.Module):
    """AVF-MAE++ fine-tuning model: ``model(video, audio) -> [B, num_classes]``.

    Args:
        dim, depth, num_heads: encoder width, LG blocks per encoder, heads (also used by IAVCL).
        fusion_depth: DiER units in IAVCL.
        num_classes: head outputs; 0 gives no head (``forward`` returns the pooled 2C features).
        drop_path: stochastic depth, linear over the encoder depth (IAVCL: units linear, HAFE half).
        lg_fourth_attn: keep step 4 of the LG block.
        iavcl: use IAVCL; off, the features are ``[mean_k F_v; mean_k F_a]`` of the layer-weighted region
            tokens (a plain pooled fusion for the ablation).
        head_activation: None, ``"sigmoid"``, ``"tanh"`` or ``"relu"`` after the head (regression).
        fc_norm: the LayerNorm before the head (timm's name); off, ``forward_head`` sees the raw features.
        grad_checkpointing: activation checkpointing per encoder block.
    """

    def __init__(
        self,
        *,
        dim: int,
        depth: int,
        num_heads: int,
        fusion_depth: int = 2,
        mlp_ratio: float = 4.0,
        num_classes: int = 0,
        drop_path: float = 0.1,
        lg_fourth_attn: bool = True,
        iavcl: bool = True,
        head_activation: str | None = None,
        fc_norm: bool = True,
        grad_checkpointing: bool = False,
    ) -> None:
        super().__init__()
        if head_activation not in HEAD_ACTIVATIONS:
            raise ValueError(f"head_activation must be one of {list(HEAD_ACTIVATIONS)}, got {head_activation!r}")
        self.dim = dim
        self.num_features = 2 * dim
        self.num_classes = num_classes
        self.head_activation = head_activation
        self.video_encoder = video_encoder(dim, depth, num_heads, drop_path, lg_fourth_attn)
        self.audio_encoder = audio_encoder(dim, depth, num_heads, drop_path, lg_fourth_attn)
        self.fusion = IAVCL(dim, num_heads, fusion_depth, mlp_ratio, drop_path) if iavcl else None
        self.layer_weights_video = nn.Parameter(torch.full((depth,), 1.0 / depth))
        self.layer_weights_audio = nn.Parameter(torch.full((depth,), 1.0 / depth))
        self.fc_norm: nn.Module = LayerNorm(self.num_features) if fc_norm else nn.Identity()
        self.head: nn.Module = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()
        self.head_act = HEAD_ACTIVATIONS[head_activation]()
        init_weights(self.video_encoder, "trunc_normal")
        init_weights(self.audio_encoder, "trunc_normal")
        for p in (self.video_encoder.region_tokens, self.audio_encoder.region_tokens):
            nn.init.trunc_normal_(p, std=0.02)
        if self.fusion is not None:
            init_weights(self.fusion, "xavier")
        if not lg_fourth_attn:
            for encoder in (self.video_encoder, self.audio_encoder):
                encoder.blocks[-1].local_update_parameters().requires_grad_(False)
        self.set_grad_checkpointing(grad_checkpointing)

    # ---- timm conventions -------------------------------------------------------------------------
    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> dict[str, Any]:
        return encoder_group_matcher()

    @torch.jit.ignore
    def no_weight_decay(self) -> set[str]:
        return {"video_encoder.region_tokens", "audio_encoder.region_tokens"}

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.video_encoder.grad_checkpointing = enable
        self.audio_encoder.grad_checkpointing = enable

    @torch.jit.ignore
    def get_classifier(self) -> nn.Module:
        return self.head

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        """Replace the head (``global_pool`` is accepted for timm compatibility and ignored)."""
        self.num_classes = num_classes
        like = self.layer_weights_video
        device, dtype = like.device, like.dtype
        self.head = (
            nn.Linear(self.num_features, num_classes, device=device, dtype=dtype) if num_classes > 0 else nn.Identity()
        )

    # ---- forward ----------------------------------------------------------------------------------
    def forward_regions(self, video: Tensor, audio: Tensor) -> tuple[Tensor, Tensor]:
        """Per-layer normalized region tokens: video ``[B, K, L, C]``, audio ``[B, K, L, C]``."""
        return self.video_encoder.forward_regions(video), self.audio_encoder.forward_regions(audio)

    def forward_features(self, video: Tensor, audio: Tensor) -> Tensor:
        """``video [B, 3, 16, 160, 160]``, ``audio [B, 1, 256, 128]`` -> pooled features ``[B, 2C]``."""
        v_layers, a_layers = self.forward_regions(video, audio)
        w_v = self.layer_weights_video.softmax(dim=0).to(v_layers.dtype)
        w_a = self.layer_weights_audio.softmax(dim=0).to(a_layers.dtype)
        v_global = torch.einsum("bklc,l->bkc", v_layers, w_v)
        a_global = torch.einsum("bklc,l->bkc", a_layers, w_a)
        if self.fusion is None:
            return torch.cat((v_global.mean(dim=1), a_global.mean(dim=1)), dim=-1)
        overall = torch.cat((v_global, a_global), dim=-1)
        v, a = self.fusion(v_layers[:, :, -1], a_layers[:, :, -1], overall)
        return torch.cat((v.mean(dim=1), a.mean(dim=1)), dim=-1)

    def forward_head(self, features: Tensor, pre_logits: bool = False) -> Tensor:
        """``features [B, 2C]`` -> ``fc_norm`` -> head -> activation ``[B, num_classes]``."""
        x = self.fc_norm(features)
        if pre_logits:
            return x
        return self.head_act(self.head(x))

    def forward(self, video: Tensor, audio: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(video, audio))


# ---- registry ---------------------------------------------------------------------------------------


def _cfg(**kwargs: Any) -> dict[str, Any]:
    return {
        "url": "",
        "num_classes": 0,
        "input_size": (3, 160, 160),
        "mean": IMAGENET_DEFAULT_MEAN,
        "std": IMAGENET_DEFAULT_STD,
        "first_conv": "video_encoder.patch_embed.proj",
        "classifier": "head",
        "license": "apache-2.0",
        **kwargs,
    }


default_cfgs = generate_default_cfgs({f"avf_mae_pp_{size}": _cfg() for size in SIZES})


def _create_finetune(variant: str, size: str, pretrained: bool = False, **kwargs: Any) -> AVFViT:
    if pretrained:
        raise ValueError("no hosted weights: import official checkpoints with avf.artifacts.official")
    if size not in SIZES:
        raise ValueError(f"unknown size {size!r}; choose one of {sorted(SIZES)}")
    s = SIZES[size]
    args = {"dim": s.dim, "depth": s.depth, "num_heads": s.num_heads, "fusion_depth": s.fusion_depth, **kwargs}
    return build_model_with_cfg(AVFViT, variant, pretrained=False, kwargs_filter=("in_chans",), **args)


@register_model
def avf_mae_pp_tiny(pretrained: bool = False, **kwargs: Any) -> AVFViT:
    """Tiny fine-tuning model for CPU tests and the demo (C=96, 3 heads, depth 4)."""
    return _create_finetune("avf_mae_pp_tiny", "tiny", pretrained, **kwargs)


@register_model
def avf_mae_pp_base(pretrained: bool = False, **kwargs: Any) -> AVFViT:
    """AVF-MAE++ base fine-tuning model: 169,122,851 parameters with 11 classes."""
    return _create_finetune("avf_mae_pp_base", "base", pretrained, **kwargs)


@register_model
def avf_mae_pp_large(pretrained: bool = False, **kwargs: Any) -> AVFViT:
    """AVF-MAE++ large fine-tuning model: 303,233,319 parameters with 11 classes."""
    return _create_finetune("avf_mae_pp_large", "large", pretrained, **kwargs)


@register_model
def avf_mae_pp_huge(pretrained: bool = False, **kwargs: Any) -> AVFViT:
    """AVF-MAE++ huge fine-tuning model: 521,309,229 parameters with 11 classes."""
    return _create_finetune("avf_mae_pp_huge", "huge", pretrained, **kwargs)
