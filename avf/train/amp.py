"""Mixed precision: bf16 autocast where supported, fp16 with a grad scaler on older GPUs, fp32 on CPU."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from contextlib import AbstractContextManager

import torch


def resolve_dtype(mode: str, device: torch.device) -> torch.dtype | None:
    """Autocast dtype for ``mode`` (auto/off/bf16/fp16) on ``device``; None means fp32 (no autocast)."""
    if mode == "off":
        return None
    if device.type == "cuda":
        if mode == "fp16":
            return torch.float16
        # emulated bf16 (V100, T4) is slower than fp16 with a grad scaler: auto takes native bf16 only
        if mode == "bf16" or torch.cuda.is_bf16_supported(including_emulation=False):
            return torch.bfloat16
        return torch.float16
    # CPU: autocast only when asked explicitly (bf16 matmuls are slow on most CPUs).
    return torch.bfloat16 if mode == "bf16" else None


def autocast(device: torch.device, dtype: torch.dtype | None) -> Callable[[], AbstractContextManager[object]]:
    """A factory of autocast contexts (a no-op context for fp32)."""
    if dtype is None:
        return contextlib.nullcontext
    return lambda: torch.amp.autocast(device_type=device.type, dtype=dtype)


def grad_scaler(device: torch.device, dtype: torch.dtype | None) -> torch.amp.GradScaler | None:
    """A GradScaler only for fp16 (bf16 and fp32 need none)."""
    if dtype == torch.float16:
        return torch.amp.GradScaler(device.type)
    return None
