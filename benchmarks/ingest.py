"""Training-batch ingestion on a private Ray cluster: decode tasks on 1 and 2 CPUs, against the DataLoader item.

On the same generated shards (face frames at 160 px, 64 per clip, as the faces stage writes them), in one run:

1. **in-process item**: ``ClipDataset.item`` for a fine-tuning window (what one DataLoader worker spends per
   clip): CPU ms per clip, the reference.
2. **Ray tasks** (``data.ingest: ray``, :class:`avf.data.remote_batches.RemoteBatches`) on a cluster of 1 and
   of 2 CPUs: clips per second delivered to the consumer, the decode CPUs' ms per clip (CPUs x wall / clips),
   and the consumer's own CPU ms per clip (the trainer's share: receiving the batches). Target: 2 CPUs >= 1.7x
   the throughput of 1.
3. **Ray Data** ``map`` over the same micro-batches with the same decode function, on 1 and 2 CPUs: the
   library this replaces, measured so the choice can be re-checked on a newer Ray.
4. **decoding on the device** (``pretrain.decode: device``): CPU ms per pretraining item with its frames
   decoded against left as JPEG, and with CUDA (``--device cuda``) the batched nvJPEG decode, crop and resize
   of :func:`avf.data.transforms.decode_on_device` in clips per second.

Every figure is the best of ``--rounds`` passes after a warm-up pass (Ray starts worker processes on the first).
Run ``python -m benchmarks.ingest [--clips N]``; prints the CPU, then a table; the JSON goes to
``reports/bench/ingest.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from avf.config.data import AudioConfig, AugmentConfig, ClipConfig
from avf.data.loader import ClipDataset
from avf.data.remote_batches import BatchRequest, BatchSource, RemoteBatches, load_batch
from avf.data.shards import ShardIndex
from avf.runtime.cluster import loopback_only
from avf.utils.io import write_json
from benchmarks.harness import cpu_line, machine_info

ROOT = Path(__file__).resolve().parents[1]
FRAMES, MICRO = 64, 16
CLIP, AUDIO, AUGMENT = ClipConfig(), AudioConfig(), AugmentConfig(rand_augment="")
TARGET_SCALING = 1.7
TARGET_TRAINER_MS = 1.2  # CPU per training clip on the trainer's node


def write_shards(out: Path, clips: int) -> Path:
    """``clips`` samples of face frames (JPEG quality 90, as the faces stage writes them), 8 to a shard."""
    from tests.support import shards

    return shards.write_shards(out, clips, per_shard=8, n_frames=FRAMES, prefix="bench__c", faces=True, quality=90)


def _requests(shards: Path, epoch: int) -> list[BatchRequest]:
    keys = ShardIndex.load(shards).keys
    return [BatchRequest(epoch, tuple((0, k) for k in keys[i : i + MICRO])) for i in range(0, len(keys), MICRO)]


def _item_cpu_ms(ds: ClipDataset, rounds: int) -> float:
    """Best CPU ms per ``ds.item`` over ``rounds`` passes through every key, in this process (one thread)."""
    import torch

    torch.set_num_threads(1)
    best = float("inf")
    for r in range(rounds + 1):
        t = time.process_time()
        for key in ds.keys:
            ds.item(key, r)
        if r:  # the first pass warms caches
            best = min(best, (time.process_time() - t) / len(ds.keys))
    return 1000 * best


def in_process_ms(shards: Path, rounds: int) -> float:
    """CPU ms per clip of a fine-tuning ``ClipDataset.item`` in this process (one thread)."""
    return _item_cpu_ms(ClipDataset(shards, train=True, clip=CLIP, audio=AUDIO, augment=AUGMENT), rounds)


def device_decode(shards: Path, rounds: int, device: str) -> dict[str, float]:
    """Pretraining items in this process with frames decoded vs left as JPEG; the device's batched decode."""
    import torch

    from avf.data.loader import collate_clips
    from avf.data.transforms import decode_on_device

    kw = {"train": True, "clip": CLIP, "audio": AUDIO, "augment": AUGMENT, "pretrain": True}
    out = {
        "item_cpu_ms_decoded": _item_cpu_ms(ClipDataset(shards, **kw), rounds),
        "item_cpu_ms_jpeg": _item_cpu_ms(ClipDataset(shards, **kw, decode=False), rounds),
    }
    if device == "cuda" and torch.cuda.is_available():
        ds = ClipDataset(shards, **kw, decode=False)
        batches = [
            collate_clips([ds.item(k, 0) for k in ds.keys[i : i + MICRO]]) for i in range(0, len(ds.keys), MICRO)
        ]
        dev = torch.device("cuda")
        best = float("inf")
        for r in range(rounds + 1):
            torch.cuda.synchronize()
            t = time.perf_counter()
            for b in batches:
                decode_on_device(b["jpeg"], b["jpeg_sizes"], b["crop"], CLIP.image_size, dev)
            torch.cuda.synchronize()
            if r:
                best = min(best, time.perf_counter() - t)
        out["device_clips_per_s"] = len(ds.keys) / best
    return out


@contextlib.contextmanager
def private_cluster(cpus: int) -> Iterator[None]:
    import ray

    with loopback_only():
        ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
    try:
        yield
    finally:
        ray.shutdown()


def _passes(run_pass: Callable[[int], int], rounds: int) -> dict[str, float]:
    """Best wall seconds and the consumer's CPU seconds over ``rounds`` timed passes (after one warm-up)."""
    run_pass(0)
    best_wall, best_cpu, clips = float("inf"), float("inf"), 0
    for r in range(1, rounds + 1):
        wall, cpu = time.perf_counter(), time.process_time()
        clips = run_pass(r)
        best_wall = min(best_wall, time.perf_counter() - wall)
        best_cpu = min(best_cpu, time.process_time() - cpu)
    return {"clips": clips, "wall_s": best_wall, "consumer_cpu_s": best_cpu}


def ray_tasks(shards: Path, cpus: int, rounds: int) -> dict[str, float]:
    source = BatchSource.of([shards], "finetune", 0, CLIP, AUDIO, AUGMENT)

    def run_pass(epoch: int) -> int:
        return sum(len(b["key"]) for b in RemoteBatches(source, in_flight=2 * cpus)(_requests(shards, epoch)))

    with private_cluster(cpus):
        return _passes(run_pass, rounds)


def _numpy_batch(source: BatchSource, row: dict[str, Any]) -> dict[str, Any]:
    request = BatchRequest(int(row["epoch"]), tuple((0, str(k)) for k in row["keys"]))
    batch = load_batch(source, request)
    return {"video": batch["video"], "audio": batch["audio"], "n": len(batch["key"])}


def ray_data(shards: Path, cpus: int, rounds: int) -> dict[str, float]:
    import functools

    import ray.data

    source = BatchSource.of([shards], "finetune", 0, CLIP, AUDIO, AUGMENT)

    def run_pass(epoch: int) -> int:
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False
        ctx.execution_options.preserve_order = True
        rows = [{"epoch": epoch, "keys": [k for _, k in r.samples]} for r in _requests(shards, epoch)]
        ds = ray.data.from_items(rows).map(functools.partial(_numpy_batch, source), num_cpus=1)
        return sum(int(row["n"]) for row in ds.iter_rows())

    with private_cluster(cpus):
        logging.getLogger("ray.data").setLevel(logging.WARNING)
        return _passes(run_pass, rounds)


def _summary(case: dict[str, float], cpus: int) -> dict[str, float]:
    n = case["clips"]
    return {
        **case,
        "clips_per_s": n / case["wall_s"],
        "decode_cpu_ms_per_clip": 1000 * cpus * case["wall_s"] / n,
        "consumer_cpu_ms_per_clip": 1000 * case["consumer_cpu_s"] / n,
    }


def _print_cpu_targets(results: dict[str, Any]) -> None:
    """The CPU per training clip that the trainer's node spends, each way, against the target."""
    rows = {
        "decoded beside the trainer (data.ingest: loader)": results["in_process_item_ms"],
        "pretraining, frames decoded on the device (pretrain.decode: device)": results["device_decode"][
            "item_cpu_ms_jpeg"
        ],
    }
    if "ray tasks" in results:
        rows["decoded in Ray tasks elsewhere (data.ingest: ray), receiving"] = results["ray tasks"]["2 CPU"][
            "consumer_cpu_ms_per_clip"
        ]
    for name, ms in rows.items():
        met = "met" if ms <= TARGET_TRAINER_MS else "missed"
        print(f"trainer-node CPU per clip, {name}: {ms:.2f} ms (target <= {TARGET_TRAINER_MS} ms: {met})")


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--skip-ray-data", action="store_true")
    parser.add_argument("--skip-ray", action="store_true", help="only the in-process and device cases")
    parser.add_argument("--device", default="cpu", help="cuda: also time the batched decode on the GPU")
    parser.add_argument("--out", type=Path, default=ROOT / "reports" / "bench" / "ingest.json")
    args = parser.parse_args(argv)
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import tempfile

    machine = machine_info()
    print(cpu_line(machine), flush=True)
    with tempfile.TemporaryDirectory(prefix="avf-ingest-") as tmp:
        shards = write_shards(Path(tmp) / "shards", args.clips)
        results: dict[str, Any] = {
            "machine": machine,
            "clips": args.clips,
            "micro_batch": MICRO,
            "in_process_item_ms": in_process_ms(shards, args.rounds),
            "device_decode": device_decode(shards, args.rounds, args.device),
        }
        kinds = {} if args.skip_ray else {"ray tasks": ray_tasks}
        kinds |= {} if args.skip_ray or args.skip_ray_data else {"Ray Data map": ray_data}
        for kind, fn in kinds.items():
            results[kind] = {cpus: _summary(fn(shards, cpus, args.rounds), cpus) for cpus in (1, 2)}
    print(f"{args.clips} clips, micro-batch {MICRO}")
    print(f"in-process ClipDataset.item: {results['in_process_item_ms']:.2f} CPU ms per clip (the reference)")
    dd = results["device_decode"]
    print(
        f"pretraining item: {dd['item_cpu_ms_decoded']:.2f} CPU ms per clip with its frames decoded, "
        f"{dd['item_cpu_ms_jpeg']:.2f} with them left to the device "
        f"({dd['item_cpu_ms_decoded'] / dd['item_cpu_ms_jpeg']:.1f}x less)"
    )
    if "device_clips_per_s" in dd:
        print(f"decode, crop and resize on {args.device}: {dd['device_clips_per_s']:.0f} clips/s (batches of {MICRO})")
    else:
        print("decode on a GPU: not measured (no --device cuda, or no CUDA here)")
    if kinds:
        print(f"{'case':<24}{'clips/s':>9}{'decode CPU ms/clip':>20}{'consumer CPU ms/clip':>22}")
    for kind in kinds:
        for cpus, r in results[kind].items():
            print(
                f"{kind + f', {cpus} CPU':<24}{r['clips_per_s']:>9.1f}{r['decode_cpu_ms_per_clip']:>20.2f}"
                f"{r['consumer_cpu_ms_per_clip']:>22.2f}"
            )
    for kind in kinds:
        ratio = results[kind][2]["clips_per_s"] / results[kind][1]["clips_per_s"]
        results[kind] = {f"{cpus} CPU": r for cpus, r in results[kind].items()} | {"scaling_2_over_1": ratio}
        target = f" (target >= {TARGET_SCALING}x: {'met' if ratio >= TARGET_SCALING else 'missed'})"
        print(f"{kind}: 2 CPUs / 1 CPU = {ratio:.2f}x{target if kind == 'ray tasks' else ''}")
    _print_cpu_targets(results)
    write_json(args.out, results)
    print(f"wrote {args.out}")
    return results


if __name__ == "__main__":
    main()
