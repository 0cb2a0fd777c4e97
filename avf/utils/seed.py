"""Seeding helpers: every random draw in avf comes from an explicit generator or seeded state."""

from __future__ import annotations

import hashlib


def derive_seed(*parts: object) -> int:
    """A stable 63-bit seed from any parts (e.g. ``(seed, epoch, sample_key)``), same on every machine."""
    blob = "\x1f".join(str(p) for p in parts).encode()
    return int.from_bytes(hashlib.blake2b(blob, digest_size=8).digest(), "little") & ((1 << 63) - 1)
