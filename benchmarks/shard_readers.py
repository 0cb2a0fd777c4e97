"""Shard reading: ours next to webdataset's, on the same generated shards, in one process.

1. **streaming** (what pretraining's ``PretrainStream`` does): every sample of every shard, members grouped
   by key, through ``avf.data.shards.iter_shard`` vs. ``webdataset.WebDataset(urls)`` (its tar expander and
   key grouping; no decoding in either) vs. ``tarfile`` alone;
2. **indexed** (what ``ClipDataset`` does for fine-tuning and evaluation): random samples by their byte range
   from ``index.json`` through ``avf.data.shards.read_sample`` vs. ``tarfile`` parsing the same bytes.

Samples look like the pipeline's: a ``meta.json``, 90 JPEG-sized frame members and a float16 fbank.
Run ``python -m benchmarks.shard_readers [--samples N]``; prints the CPU, then a table.
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import json
import platform
import random
import statistics
import tarfile
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from avf.data.shards import ShardIndex, ShardInfo, ShardWriter, iter_shard, npy_bytes, read_sample
from benchmarks.harness import cpu_line, machine_info

FRAMES = 90
FRAME_BYTES = 7_500  # a 160x160 face JPEG at quality 90


def write_shards(out: Path, samples: int, per_shard: int, seed: int = 0) -> list[ShardInfo]:
    rng = np.random.default_rng(seed)
    writer = ShardWriter(out, max_bytes=1 << 40, max_count=per_shard)
    for i in range(samples):
        members = {"meta.json": json.dumps({"label": i % 8, "fps": 30.0}).encode()}
        for f in range(FRAMES):
            members[f"{f:05d}.jpg"] = rng.bytes(FRAME_BYTES)
        members["fbank.npy"] = npy_bytes(rng.standard_normal((300, 128)).astype(np.float16))
        writer.write(f"demo__clip{i:05d}", members)
    return writer.close()


def stream_ours(paths: list[Path]) -> int:
    n = 0
    for p in paths:
        for _, members in iter_shard(p):
            assert isinstance(members, dict)
            n += 1
    return n


def stream_webdataset(paths: list[Path]) -> int:
    import webdataset as wds

    dataset = wds.WebDataset([str(p) for p in paths], shardshuffle=False, empty_check=False)
    return sum(1 for _ in dataset)


def stream_tarfile(paths: list[Path]) -> int:
    keys = set()
    for p in paths:
        with tarfile.open(p, mode="r|") as tar:
            for member in tar:
                fh = tar.extractfile(member)
                assert fh is not None
                fh.read()
                keys.add(member.name.partition(".")[0])
    return len(keys)


def indexed_ours(shards: list[tuple[Path, int, int, str]]) -> int:
    for path, offset, size, key in shards:
        read_sample(path, offset, size, key)
    return len(shards)


def indexed_tarfile(shards: list[tuple[Path, int, int, str]]) -> int:
    for path, offset, size, _ in shards:
        with open(path, "rb") as f:
            f.seek(offset)
            blob = f.read(size)
        with tarfile.open(fileobj=io.BytesIO(blob), mode="r:") as tar:
            for member in tar.getmembers():
                fh = tar.extractfile(member)
                assert fh is not None
                fh.read()
    return len(shards)


def indexed_wids(paths: list[Path], infos: list[ShardInfo], picks: list[int]) -> int:
    import wids  # not a dependency: measured where it is installed

    shards = [{"url": str(p), "nsamples": s.num_samples} for p, s in zip(paths, infos, strict=True)]
    dataset = wids.ShardListDataset(shards, transformations=[], localname=lambda url: url)
    for i in picks:
        dataset[i]
    return len(picks)


def best_of(fn: Callable[[], int], rounds: int) -> tuple[float, int]:
    times, n = [], 0
    for _ in range(rounds):
        t = time.perf_counter()
        n = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), n


def main(argv: list[str] | None = None) -> dict[str, float]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--samples", type=int, default=96)
    ap.add_argument("--rounds", type=int, default=5)
    a = ap.parse_args(argv)
    print(f"{cpu_line(machine_info())}; Python {platform.python_version()}")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        infos = write_shards(out, a.samples, per_shard=max(1, a.samples // 4))
        paths = [out / s.name for s in infos]
        index = ShardIndex("demo", infos, "fbank")
        located = [(paths[i], o, n, k) for k, (i, o, n) in index.locate().items()]
        picks = random.Random(0).sample(located, len(located))
        order = {k: n for n, k in enumerate(index.keys)}
        pick_numbers = [order[k] for *_, k in picks]
        rows: dict[str, float] = {}
        cases: list[tuple[str, Callable[[], int]]] = [
            ("stream: avf iter_shard", lambda: stream_ours(paths)),
            ("stream: webdataset.WebDataset", lambda: stream_webdataset(paths)),
            ("stream: tarfile", lambda: stream_tarfile(paths)),
            ("indexed: avf read_sample", lambda: indexed_ours(picks)),
            ("indexed: tarfile on the byte range", lambda: indexed_tarfile(picks)),
        ]
        if importlib.util.find_spec("wids") is not None:
            cases.append(("indexed: wids.ShardListDataset", lambda: indexed_wids(paths, infos, pick_numbers)))
        for name, fn in cases:
            seconds, n = best_of(fn, a.rounds)
            assert n == a.samples, (name, n)
            rows[name] = 1000 * seconds / n
    print(f"median of {a.rounds} rounds, {a.samples} samples of {FRAMES + 2} members")
    print(f"{'reader':40s} {'ms / sample':>12s}")
    for name, ms in rows.items():
        print(f"{name:40s} {ms:12.3f}")
    print(f"webdataset / avf, streaming: {rows['stream: webdataset.WebDataset'] / rows['stream: avf iter_shard']:.2f}x")
    for other in ("tarfile on the byte range", "wids.ShardListDataset"):
        if f"indexed: {other}" in rows:
            print(f"{other} / avf, indexed: {rows[f'indexed: {other}'] / rows['indexed: avf read_sample']:.2f}x")
    return rows


if __name__ == "__main__":
    main()
