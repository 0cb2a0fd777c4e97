"""AVF-MAE++ pretraining model (audio-visual masked autoencoder), CVPR 2025.

Paper: "AVF-MAE++: Scaling Affective Video Facial Masked Autoencoders via Efficient Audio-Visual
Self-Supervised Learning" (Wu et al., CVPR 2025; arXiv 2509.24214). Upstream code: XuecWu/AVF-MAE,
building on sunlicai/HiCMAE and sunlicai/MAE-DFER. This is an independent re-implementation of the
architecture in ``docs/avf-mae-pp-spec.md`` sections 1-6.

Flow: visible tokens (grouped by LG region) -> two LG encoders -> HCMCL on the skip layers -> IAVCL fusion
(global token = [mean V; mean A]) -> two decoders with hierarchical skips -> masked MSE on the positions
hidden from the encoder and kept by the decoder.

Registered variants (``timm.create_model``): ``avf_mae_pp_pretrain_{tiny,base,large,huge}``.
Parameter counts equal the official ones (spec 1.2); official checkpoints load through
``avf.models.official``. Deliberate differences from the official code (spec 11.2):

* hidden patches are never embedded (tubelets are gathered before the Conv3d-as-linear);
* ``region_balanced`` groups visible tokens by their real LG region (official: raster runs);
* the decoder adds to each visible token the position of that token; the official video decoder adds
  raster-ordered positions to tokens that leave the encoder in region order (a silent misalignment);
* the fourth LG attention is an explicit switch; output sizes are parameters (no ``tubelet_size=1/3``);
* ``decoder_masking`` off means every position is decoded (the official code then decodes only the
  hidden positions).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model
from torch import Tensor, nn

from avf.models.decoders import Decoder
from avf.models.encoders import audio_encoder, video_encoder
from avf.models.iavcl import IAVCL
from avf.models.layers import gather_audio_patches, gather_video_patches
from avf.models.losses import audio_targets, hcmcl, masked_mse, video_targets
from avf.models.masking import Masks, kept_index, visible_index

__all__ = ["SIZES", "AVFMAEPretrain", "ModelSize", "PretrainOutput", "init_weights"]


@dataclass(frozen=True)
class ModelSize:
    """Architecture of one registered size (encoders and fusion share width and heads)."""

    dim: int  # encoder width C
    depth: int  # LG blocks per encoder
    num_heads: int
    decoder_dim: int
    decoder_depth: int
    decoder_heads: int
    skip_layers: tuple[int, ...]  # encoder layers for HCMCL and decoder skips (0-based)
    fusion_depth: int = 2


SIZES: dict[str, ModelSize] = {
    # CPU test/demo size (not in the paper): same input geometry, grids and regions; C=96 with 3 heads,
    # 4 LG blocks, decoders 64 wide / 2 heads / 4 blocks, skips (1, 2, 3). 4.09 M parameters (pretraining),
    # 3.46 M (fine-tuning); fine-tune forward+backward at batch 8 is about 28 GFLOPs (~0.5 s on 2 cores).
    "tiny": ModelSize(96, 4, 3, 64, 4, 2, (1, 2, 3)),
    "base": ModelSize(512, 10, 8, 384, 4, 6, (3, 6, 9)),
    "large": ModelSize(640, 12, 10, 512, 4, 8, (3, 7, 11)),
    "huge": ModelSize(768, 15, 12, 640, 4, 8, (4, 9, 14)),
}

VIDEO_OUT = 2 * 16 * 16 * 3  # tubelet values per token
AUDIO_OUT = 16 * 16  # fbank patch values per token


def init_weights(module: nn.Module, linear: str = "xavier") -> None:
    """Official initialization: Linear ``xavier`` uniform (pretraining, fusion) or ``trunc_normal`` std 0.02
    (fine-tuning encoders) with zero bias; LayerNorm weight 1, bias 0. Convolutions keep PyTorch's init."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            if linear == "xavier":
                nn.init.xavier_uniform_(m.weight)
            else:
                nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def encoder_group_matcher() -> dict[str, Any]:
    """Layer-decay groups (spec 8.2): patch embeds -> 0, encoder block k -> k + 1, fusion unit k -> L + k + 1,
    everything else (region tokens, norms, ER, HAFE, decoders, head) -> top."""
    return dict(
        stem=r"^(?:video|audio)_encoder\.patch_embed",
        blocks=r"^(?:video|audio)_encoder\.blocks\.(\d+)",
        fusion=r"^fusion\.units\.(\d+)",
    )


@dataclass
class PretrainOutput:
    """Result of a pretraining forward pass.

    ``loss`` carries the graph; the other losses are detached. Predictions are in target space
    (per-patch normalized, frame-difference if enabled) at ``*_dec_index`` positions; ``*_loss_mask`` marks
    which of them count in the loss (hidden from the encoder).
    """

    loss: Tensor
    loss_video: Tensor
    loss_audio: Tensor
    loss_contrastive: Tensor
    pred_video: Tensor  # [B, Nv_dec, 1536]
    pred_audio: Tensor  # [B, Na_dec, 256]
    video_dec_index: Tensor  # [B, Nv_dec] long
    audio_dec_index: Tensor  # [B, Na_dec] long
    video_loss_mask: Tensor  # [B, Nv_dec] bool
    audio_loss_mask: Tensor  # [B, Na_dec] bool
    frame_diff_target: bool = True


class AVFMAEPretrain(nn.Module):
    """AVF-MAE++ pretraining model: ``model(video, audio, masks) -> PretrainOutput``.

    Args:
        dim, depth, num_heads: encoder width, LG blocks per encoder, heads (also used by IAVCL).
        decoder_dim, decoder_depth, decoder_heads: decoder geometry (both modalities).
        skip_layers: encoder layers feeding HCMCL and the decoder skips; ``decoder_depth - 1`` of them.
        fusion_depth: DiER units in IAVCL.
        lg_fourth_attn: keep step 4 of the LG block (region tokens read every local token).
        iavcl: use the IAVCL module; off, the encoder tokens go to the decoders unchanged.
        drop_path: stochastic depth (0 in the official pretraining).
        frame_diff_target: frame-difference target for the second frame of each tubelet.
        contrastive_weight, temperature, gather_negatives: HCMCL weight, tau, cross-rank negatives.
        grad_checkpointing: activation checkpointing per encoder and decoder block.
        region_balanced: group visible tokens by their real LG region (needs region-balanced masks);
            off reproduces the official raster grouping.
    """

    def __init__(
        self,
        *,
        dim: int,
        depth: int,
        num_heads: int,
        decoder_dim: int,
        decoder_depth: int,
        decoder_heads: int,
        skip_layers: Sequence[int],
        fusion_depth: int = 2,
        mlp_ratio: float = 4.0,
        lg_fourth_attn: bool = True,
        iavcl: bool = True,
        drop_path: float = 0.0,
        frame_diff_target: bool = True,
        contrastive_weight: float = 0.0025,
        temperature: float = 0.07,
        gather_negatives: bool = False,
        grad_checkpointing: bool = False,
        region_balanced: bool = True,
    ) -> None:
        super().__init__()
        self.skip_layers = tuple(int(i) for i in skip_layers)
        if len(self.skip_layers) != decoder_depth - 1:
            raise ValueError(f"need decoder_depth - 1 = {decoder_depth - 1} skip layers, got {self.skip_layers}")
        if list(self.skip_layers) != sorted(set(self.skip_layers)) or not all(0 <= i < depth for i in skip_layers):
            raise ValueError(f"skip_layers {self.skip_layers} must be increasing encoder layers in [0, {depth})")
        if temperature <= 0:
            raise ValueError("temperature must be positive")
        self.dim = self.num_features = dim
        self.frame_diff_target = frame_diff_target
        self.contrastive_weight = contrastive_weight
        self.temperature = temperature
        self.gather_negatives = gather_negatives
        self.region_balanced = region_balanced
        self.video_encoder = video_encoder(dim, depth, num_heads, drop_path, lg_fourth_attn)
        self.audio_encoder = audio_encoder(dim, depth, num_heads, drop_path, lg_fourth_attn)
        self.fusion = IAVCL(dim, num_heads, fusion_depth, mlp_ratio, drop_path) if iavcl else None
        self.video_decoder = Decoder(
            dim, decoder_dim, decoder_depth, decoder_heads, self.video_encoder.num_patches, VIDEO_OUT, mlp_ratio
        )
        self.audio_decoder = Decoder(
            dim, decoder_dim, decoder_depth, decoder_heads, self.audio_encoder.num_patches, AUDIO_OUT, mlp_ratio
        )
        init_weights(self, "xavier")
        for p in (self.video_encoder.region_tokens, self.audio_encoder.region_tokens):
            nn.init.trunc_normal_(p, std=0.02, a=-0.02, b=0.02)
        for p in (self.video_decoder.mask_token, self.audio_decoder.mask_token):
            nn.init.trunc_normal_(p, std=0.02, a=-0.02, b=0.02)
        self.set_grad_checkpointing(grad_checkpointing)

    # ---- timm conventions -------------------------------------------------------------------------
    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> dict[str, Any]:
        return encoder_group_matcher()

    @torch.jit.ignore
    def no_weight_decay(self) -> set[str]:
        return {
            "video_encoder.region_tokens",
            "audio_encoder.region_tokens",
            "video_decoder.mask_token",
            "audio_decoder.mask_token",
        }

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute every encoder and decoder block in backward (the decoders hold most pretraining
        activations: 480 video tokens per clip)."""
        for part in (self.video_encoder, self.audio_encoder, self.video_decoder, self.audio_decoder):
            part.grad_checkpointing = enable

    # ---- forward ----------------------------------------------------------------------------------
    def forward_encoders(
        self, video: Tensor, audio: Tensor, v_vis: Tensor, a_vis: Tensor
    ) -> tuple[Tensor, Tensor, list[Tensor], list[Tensor]]:
        """Both encoders on visible tokens: ``V [B, nv, C]``, ``A [B, na, C]`` and their skip features."""
        v, v_skips = self.video_encoder.forward_visible(video, v_vis, self.skip_layers)
        a, a_skips = self.audio_encoder.forward_visible(audio, a_vis, self.skip_layers)
        return v, a, v_skips, a_skips

    def forward_fusion(self, v: Tensor, a: Tensor) -> tuple[Tensor, Tensor]:
        """IAVCL with the global token ``[mean V; mean A] [B, 1, 2C]`` (identity when IAVCL is off)."""
        if self.fusion is None:
            return v, a
        overall = torch.cat((v.mean(dim=1, keepdim=True), a.mean(dim=1, keepdim=True)), dim=-1)
        return self.fusion(v, a, overall)

    def forward(self, video: Tensor, audio: Tensor, masks: Masks) -> PretrainOutput:
        """Pretraining step.

        Args:
            video: ``[B, 3, 16, 160, 160]`` ImageNet-normalized clip.
            audio: ``[B, 1, 256, 128]`` normalized log-mel fbank.
            masks: from ``avf.models.masking.sample_masks`` (keep them on the CPU to avoid device syncs).
        """
        device = video.device
        v_vis = visible_index(masks.video_enc, "video", self.region_balanced).to(device)
        a_vis = visible_index(masks.audio_enc, "audio", self.region_balanced).to(device)
        v_dec = kept_index(masks.video_dec).to(device)
        a_dec = kept_index(masks.audio_dec).to(device)
        v_loss_mask = masks.video_enc.to(device).gather(1, v_dec)
        a_loss_mask = masks.audio_enc.to(device).gather(1, a_dec)
        # targets first: their temporaries then come and go before the activations pile up
        grid_v, grid_a = self.video_encoder.patch_embed.grid, self.audio_encoder.patch_embed.grid
        target_v = video_targets(gather_video_patches(video, v_dec, grid_v), self.frame_diff_target)
        target_a = audio_targets(gather_audio_patches(audio, a_dec, grid_a))

        v, a, v_skips, a_skips = self.forward_encoders(video, audio, v_vis, a_vis)
        if self.contrastive_weight > 0:
            loss_c = hcmcl(v_skips, a_skips, self.temperature, self.gather_negatives)
        else:
            loss_c = video.new_zeros((), dtype=torch.float32)
        v, a = self.forward_fusion(v, a)
        pred_v = self.video_decoder(v, v_skips, v_vis, v_dec)
        pred_a = self.audio_decoder(a, a_skips, a_vis, a_dec)

        loss_v = masked_mse(pred_v, target_v, v_loss_mask, overwrite_target=True)
        loss_a = masked_mse(pred_a, target_a, a_loss_mask, overwrite_target=True)
        loss = loss_v + loss_a + self.contrastive_weight * loss_c
        return PretrainOutput(
            loss=loss,
            loss_video=loss_v.detach(),
            loss_audio=loss_a.detach(),
            loss_contrastive=loss_c.detach(),
            pred_video=pred_v,
            pred_audio=pred_a,
            video_dec_index=v_dec,
            audio_dec_index=a_dec,
            video_loss_mask=v_loss_mask,
            audio_loss_mask=a_loss_mask,
            frame_diff_target=self.frame_diff_target,
        )


# ---- registry ---------------------------------------------------------------------------------------


def _cfg(**kwargs: Any) -> dict[str, Any]:
    return {
        "url": "",
        "num_classes": -1,  # no classifier: keeps timm from passing num_classes to the model
        "input_size": (3, 160, 160),
        "mean": IMAGENET_DEFAULT_MEAN,
        "std": IMAGENET_DEFAULT_STD,
        "first_conv": "video_encoder.patch_embed.proj",
        "license": "apache-2.0",
        **kwargs,
    }


default_cfgs = generate_default_cfgs({f"avf_mae_pp_pretrain_{size}": _cfg() for size in SIZES})


def size_kwargs(size: str) -> dict[str, Any]:
    """Constructor arguments of a registered size."""
    if size not in SIZES:
        raise ValueError(f"unknown size {size!r}; choose one of {sorted(SIZES)}")
    return dict(vars(SIZES[size]))


def _create_pretrain(variant: str, size: str, pretrained: bool = False, **kwargs: Any) -> AVFMAEPretrain:
    if pretrained:
        raise ValueError("no hosted weights: import official checkpoints with avf.artifacts.official")
    args = {**size_kwargs(size), **kwargs}
    return build_model_with_cfg(AVFMAEPretrain, variant, pretrained=False, kwargs_filter=("in_chans",), **args)


@register_model
def avf_mae_pp_pretrain_tiny(pretrained: bool = False, **kwargs: Any) -> AVFMAEPretrain:
    """Tiny pretraining model for CPU tests and the demo (C=96, 3 heads, depth 4, decoder 64/2/4)."""
    return _create_pretrain("avf_mae_pp_pretrain_tiny", "tiny", pretrained, **kwargs)


@register_model
def avf_mae_pp_pretrain_base(pretrained: bool = False, **kwargs: Any) -> AVFMAEPretrain:
    """AVF-MAE++ base pretraining model: 187,942,660 parameters."""
    return _create_pretrain("avf_mae_pp_pretrain_base", "base", pretrained, **kwargs)


@register_model
def avf_mae_pp_pretrain_large(pretrained: bool = False, **kwargs: Any) -> AVFMAEPretrain:
    """AVF-MAE++ large pretraining model: 336,322,308 parameters."""
    return _create_pretrain("avf_mae_pp_pretrain_large", "large", pretrained, **kwargs)


@register_model
def avf_mae_pp_pretrain_huge(pretrained: bool = False, **kwargs: Any) -> AVFMAEPretrain:
    """AVF-MAE++ huge pretraining model: 572,665,092 parameters."""
    return _create_pretrain("avf_mae_pp_pretrain_huge", "huge", pretrained, **kwargs)
