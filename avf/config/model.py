"""``model`` and ``masking`` sections of ``params.yaml``."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from avf.config.base import Section


class ModelConfig(Section):
    """Which AVF-MAE++ size to build and the architecture switches the paper ablates."""

    size: Literal["tiny", "base", "large", "huge"] = "tiny"
    lg_fourth_attn: bool = True  # step 4 of the LG block: region tokens read every local token
    iavcl: bool = True  # the iterative audio-visual correlation learning module (off: plain mean fusion)
    drop_path: float = Field(0.1, ge=0.0, lt=1.0)  # fine-tuning stochastic depth (pretraining uses 0)
    grad_checkpointing: bool = False  # activation checkpointing in the encoders (for the huge size)
    compile: bool = False  # torch.compile the model (falls back to eager when compilation fails)


class MaskingConfig(Section):
    """Dual masking (encoder + decoder masks for both modalities), spec section 3."""

    video_ratio: float = Field(0.9, gt=0.0, lt=1.0)  # tube mask: share of patches hidden from the encoder
    audio_ratio: float = Field(0.8125, gt=0.0, lt=1.0)  # random mask over the 16x8 fbank patch grid
    # Decoder masking (the "dual" in dual masking); off means every position is reconstructed.
    decoder_masking: bool = True
    decoder_video_ratio: float = Field(0.5, ge=0.0, lt=1.0)  # running-cell mask
    decoder_audio_ratio: float = Field(0.5, ge=0.0, lt=1.0)  # random mask
    # Equal visible tokens per LG region, so pretraining regions are real spatial regions
    # (off reproduces the official raster-order grouping).
    region_balanced: bool = True
