"""Loaders under load: the pretraining stream with several DataLoader workers over many shards for a
sustained, bounded run keeps memory flat; the indexed reader delivers every sample of an epoch exactly
once (one process, DataLoader workers, and two simulated ranks).
"""

from __future__ import annotations

import json
import math
import time
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import pytest
from torch.utils.data import DataLoader, Dataset

from avf.config.data import AudioConfig, AugmentConfig, ClipConfig
from avf.data.audio import log_mel
from avf.data.loader import ClipDataset, pretrain_stream
from avf.data.shards import INDEX_NAME, ShardIndex, ShardWriter, npy_bytes
from avf.data.video import encode_jpeg
from avf.train.sampling import GlobalBatchSampler, shard_indices

pytestmark = [pytest.mark.reliability, pytest.mark.filterwarnings("ignore:This DataLoader will create")]

AUDIO = AudioConfig()
CLIP = ClipConfig(num_frames=4, sampling_rate=2, image_size=32, test_views=1)
AUGMENT = AugmentConfig(rand_augment="")
SHARDS, PER_SHARD, FRAMES = 24, 4, 16
RUN_S = 45.0  # sustained streaming run, wall clock
WORKERS = 4
LEAK_MIB = 32.0  # allowed RSS trend after warm-up (measured: within +-5 MiB on a 2-core box)
# Workers start from a fresh interpreter: forked from a pytest worker, they would inherit whatever threads and
# native state earlier tests left in it (Ray drivers, MediaPipe graphs, servers' clients). A stall with every
# worker alive was seen that way once; its cause was not found. STALL_S fails a stall with the DataLoader's
# own error, well before the test's timeout.
START, STALL_S = "spawn", 120.0


@cache
def _fbank() -> bytes:
    t = np.arange(12000) / 16000
    return npy_bytes(log_mel((0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), AUDIO).astype(np.float16))


def _members(i: int) -> dict[str, bytes]:
    """16 frames of 32x32 JPEG (a per-sample texture), the clip's fbank and its meta."""
    rng = np.random.default_rng(i)
    meta = {
        "dataset": "load",
        "label": i % 4,
        "targets": None,
        "frame_times": [round(f / 25, 6) for f in range(FRAMES)],
    }
    members = {"meta.json": json.dumps(meta).encode(), "fbank.npy": _fbank()}
    for f in range(FRAMES):
        members[f"{f:05d}.jpg"] = encode_jpeg(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8), 85)
    return members


@pytest.fixture(scope="module")
def shard_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("load")
    writer = ShardWriter(out, 1 << 30, PER_SHARD)
    for i in range(SHARDS * PER_SHARD):
        writer.write(f"load__c{i:03d}", _members(i))
    index = ShardIndex("load", writer.close(), "fbank", "fp", {"num_mel_bins": AUDIO.num_mel_bins})
    (out / INDEX_NAME).write_text(json.dumps(index.to_json()))
    assert len(index.shards) == SHARDS
    return out


def _loader(data: Dataset[Any], **kw: Any) -> DataLoader[Any]:
    """A DataLoader whose workers start as :data:`START` and whose every batch comes within :data:`STALL_S`."""
    return DataLoader(data, multiprocessing_context=START, timeout=STALL_S, **kw)


def _rss_mb(main: psutil.Process) -> float:
    """Resident memory of this process and its children (the DataLoader workers, multiprocessing's resource
    tracker), MiB."""
    total = 0
    for p in [main, *main.children(recursive=True)]:
        try:
            total += p.memory_info().rss
        except psutil.NoSuchProcess:
            continue
    return total / 2**20


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_streaming_with_many_workers_over_many_shards_keeps_memory_flat(shard_dir: Path) -> None:
    stream = pretrain_stream(
        [shard_dir], clip=CLIP, audio=AUDIO, augment=AUGMENT, seed=0, rank=0, world_size=1,
        samples_per_epoch=10**7, num_workers=WORKERS, shuffle_buffer=64,
    )  # fmt: skip
    loader = _loader(stream, batch_size=8, num_workers=WORKERS, prefetch_factor=2)
    main = psutil.Process()
    samples: list[tuple[float, float]] = []
    keys: set[str] = set()
    n_items = 0
    t0 = last = math.nan  # the run starts with the first batch: the workers' start-up is not part of it
    batches = iter(loader)
    for batch in batches:  # one long epoch: every worker cycles over its shards again and again
        n_items += len(batch["key"])
        keys.update(batch["key"])
        now = time.monotonic()
        if math.isnan(t0):
            t0 = last = now
        if now - last >= 0.5:
            samples.append((now - t0, _rss_mb(main)))
            last = now
        if now - t0 >= RUN_S:
            break
    workers = len(batches._workers)  # type: ignore[attr-defined]
    del batches, loader
    elapsed = time.monotonic() - t0
    total = SHARDS * PER_SHARD
    print(f"streamed {n_items} clips ({n_items / total:.1f} passes over {total}) in {elapsed:.0f} s")
    # the shards are dealt to the workers without overlap: every sample read means every worker ran
    assert workers == WORKERS and len(keys) == total
    assert n_items >= 3 * total, "too few passes to see a leak"

    steady = np.array([s for s in samples if s[0] >= 0.3 * elapsed])  # after warm-up (buffers, imports)
    assert len(steady) >= 20
    t, rss = steady[:, 0], steady[:, 1]
    slope = np.polyfit(t, rss, 1)[0]  # MiB per second
    growth = slope * (t[-1] - t[0])
    first, last_part = rss[: len(rss) // 3].mean(), rss[-(len(rss) // 3) :].mean()
    print(f"RSS {rss.min():.0f}-{rss.max():.0f} MiB after warm-up, trend {growth:+.1f} MiB over {t[-1] - t[0]:.0f} s")
    assert growth < LEAK_MIB, f"memory grows: {growth:.1f} MiB over the steady part"
    assert last_part - first < LEAK_MIB


def _keys_through(loader: DataLoader) -> list[str]:
    return [k for batch in loader for k in batch["key"]]


def test_the_indexed_reader_delivers_every_sample_exactly_once(shard_dir: Path) -> None:
    ds = ClipDataset(shard_dir, None, train=True, clip=CLIP, audio=AUDIO, augment=AUGMENT)
    n = len(ds)
    assert n == SHARDS * PER_SHARD

    # one process, DataLoader workers: the whole epoch, no sample twice
    got = _keys_through(_loader(ds, batch_size=5, shuffle=True, num_workers=3))
    assert sorted(got) == sorted(ds.keys) and len(set(got)) == n

    # two simulated ranks, evaluation split (shard_indices): disjoint, together everything
    per_rank = [_keys_through(_loader(ds, batch_size=4, sampler=shard_indices(n, r, 2), num_workers=2)) for r in (0, 1)]
    assert not set(per_rank[0]) & set(per_rank[1])
    assert sorted(per_rank[0] + per_rank[1]) == sorted(ds.keys)

    # two simulated ranks, training split (GlobalBatchSampler): equal batches, disjoint, exactly once
    for epoch in (0, 1):
        ranks = []
        for r in (0, 1):
            sampler = GlobalBatchSampler(n, 8, rank=r, world_size=2, seed=3)
            sampler.set_epoch(epoch)
            ds.set_epoch(epoch)
            ranks.append(_keys_through(_loader(ds, batch_sampler=sampler, num_workers=2)))
        assert len(ranks[0]) == len(ranks[1]) == n // 2
        assert not set(ranks[0]) & set(ranks[1]) and sorted(ranks[0] + ranks[1]) == sorted(ds.keys)
