"""Checks of a written shard folder for ``avf data inspect``: its first sample, and every sample's integrity."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from avf.data.loader import unpack_sample
from avf.data.shards import CorruptSampleError, ShardIndex, read_sample

__all__ = ["SampleMembers", "corrupt_samples", "first_sample"]


@dataclass(frozen=True)
class SampleMembers:
    """The tar members of one sample: its key, how many JPEG frames, and the other member names (sorted)."""

    key: str
    jpg_frames: int
    others: list[str]


def first_sample(shard_dir: Path, index: ShardIndex) -> SampleMembers | None:
    """The members of the folder's first sample (None when it has none); raises ``CorruptSampleError``."""
    if not index.shards or not index.shards[0].keys:
        return None
    first = index.shards[0]
    members = read_sample(shard_dir / first.name, first.offsets[0], first.sizes[0], first.keys[0])
    jpgs = sum(name.endswith(".jpg") for name in members)
    return SampleMembers(first.keys[0], jpgs, sorted(n for n in members if not n.endswith(".jpg")))


def corrupt_samples(shard_dir: Path, index: ShardIndex) -> Iterator[CorruptSampleError]:
    """Read, parse and decode every frame of every sample, as training would; yields each corrupt sample's error."""
    for s in index.shards:
        for key, off, size in zip(s.keys, s.offsets, s.sizes, strict=True):
            try:
                sample = unpack_sample(read_sample(shard_dir / s.name, off, size, key), key, shard_dir / s.name)
                sample.decode(np.arange(len(sample.frames)))
            except CorruptSampleError as exc:
                yield exc
