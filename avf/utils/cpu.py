"""What this CPU's matrix units can do, from the kernel's CPU flags (Linux; elsewhere nothing is claimed)."""

from __future__ import annotations

import contextlib
from pathlib import Path

# Instructions that run bf16 matmuls natively: AMX tiles (Intel Sapphire Rapids and later) and AVX-512 BF16
# dot products (Intel Cooper Lake, AMD Zen 4). Without them PyTorch emulates bf16, slower than fp32.
BF16_FLAGS = ("amx_bf16", "avx512_bf16")


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> frozenset[str]:
    """The flags of the first CPU listed in ``cpuinfo`` (empty where the file does not exist)."""
    with contextlib.suppress(OSError):
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("flags"):
                return frozenset(line.split(":", 1)[1].split())
    return frozenset()


def bf16_units(cpuinfo: Path = Path("/proc/cpuinfo")) -> tuple[str, ...]:
    """The bf16 matrix instructions this CPU has (empty: bf16 would be emulated)."""
    flags = cpu_flags(cpuinfo)
    return tuple(f for f in BF16_FLAGS if f in flags)


def has_amx_bf16() -> bool:
    """Whether this CPU has AMX bf16 tiles."""
    return "amx_bf16" in bf16_units()
