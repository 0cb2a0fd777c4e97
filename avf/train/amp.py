"""Mixed precision: bf16 autocast where the matrix units run it natively, fp16 with a grad scaler on older
GPUs, fp32 elsewhere."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from contextlib import AbstractContextManager

import torch

from avf.utils.cpu import bf16_units


def resolve_dtype(mode: str, device: torch.device) -> torch.dtype | None:
    """Autocast dtype for ``mode`` (auto/off/bf16/fp16) on ``device``; None means fp32 (no autocast).

    ``auto`` on a CPU is bf16 where the CPU has bf16 matrix instructions (AMX, AVX-512 BF16) and fp32
    elsewhere, where PyTorch would emulate bf16 more slowly than fp32. The result depends on the machine:
    a run whose metrics must match across machines sets ``off``.
    """
    if mode == "off":
        return None
    if device.type == "cuda":
        if mode == "fp16":
            return torch.float16
        # emulated bf16 (V100, T4) is slower than fp16 with a grad scaler: auto takes native bf16 only
        if mode == "bf16" or torch.cuda.is_bf16_supported(including_emulation=False):
            return torch.bfloat16
        return torch.float16
    if mode == "bf16" or (mode == "auto" and bf16_units()):
        return torch.bfloat16
    return None  # auto without bf16 units, and fp16, which few CPUs run natively


def precision_name(dtype: torch.dtype | None) -> str:
    """``fp32``, ``bf16`` or ``fp16``: what a run records of its :func:`resolve_dtype`."""
    return "fp32" if dtype is None else {torch.bfloat16: "bf16", torch.float16: "fp16"}[dtype]


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
