"""Ray scaling: pretraining clips/s with 1 and 2 Ray Train workers here, and a wall-clock projection.

The measured part runs the real training stack (``avf.train.launch.run`` -> Ray Train workers ->
``avf.train.loop.fit`` with DDP over gloo) on :class:`SyntheticPretrainTask`: ``PretrainTask`` with its
shard stream replaced by fixed random clips held in memory, so the number is the step (compute +
gradient all-reduce) without I/O. The same global batch is split over the workers, and the machine's
cores are split between them (``threads_per_worker = cores // workers``).

The projection for the paper's pretraining (1.09M clips x 100 epochs) on 8 and 64 GPUs is derived,
not measured (no GPU here): per-GPU clips/s = assumed bf16 MFU x H100 dense bf16 peak / training FLOPs
per clip (3 x the forward FLOPs counted by ``torch.utils.flop_counter``), times an assumed data-parallel
efficiency. The loader cores each GPU needs follow from the shard loader's measured clips/s per core.
"""

from __future__ import annotations

import json
import os
import statistics
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch

from avf.config import Params
from avf.config.infra import RayConfig
from avf.train.session import Session
from avf.train.tasks import PretrainTask

PAPER_CLIPS = 1_090_000
PAPER_EPOCHS = 100
H100_BF16_DENSE = 989.4e12  # FLOP/s, SXM, dense (no sparsity)
ASSUMED_MFU = 0.35  # the GPU target for base at batch 64 (not measured here)
DP_EFFICIENCY = {8: 0.95, 64: 0.85}  # one NVLink node; 8 nodes over InfiniBand (assumed)
DEFAULT_LOADER_CLIPS_PER_CORE = 25.0  # used when no measured shard-loader figure is passed


class SyntheticPretrainTask(PretrainTask):
    """``PretrainTask`` whose batches are fixed random clips (per rank) instead of the shard stream."""

    def __init__(self, params: Params, session: Session) -> None:
        super().__init__(params, [], params.pretrain.batch_size * (params.pretrain.steps_per_epoch or 1), session)
        g = torch.Generator().manual_seed(1000 + session.rank)
        self._video = torch.randn(self.micro, 3, 16, 160, 160, generator=g)
        self._audio = torch.randn(self.micro, 1, 256, 128, generator=g)

    def train_batches(self, epoch: int, start_micro_step: int) -> Iterable[Any]:
        n_micro = self.steps_per_epoch() * self.cfg.accum_steps
        for _ in range(start_micro_step, n_micro):
            yield {"video": self._video, "audio": self._audio}


def build(config: dict[str, Any], params: Params, session: Session) -> SyntheticPretrainTask:
    """``task_factory`` hook for ``avf.train.worker.build_task``."""
    return SyntheticPretrainTask(params, session)


def bench_config(size: str, batch: int, steps: int, threads: int) -> dict[str, Any]:
    params = Params().model_dump(mode="json")
    params["model"]["size"] = size
    params["pretrain"].update(
        batch_size=batch, steps_per_epoch=steps, epochs=1, log_every=1, warmup_epochs=0.0, num_workers=0, amp="off"
    )  # fp32 on every CPU, as the scaling table in docs/performance.md
    return {
        "stage": "bench",
        "task_factory": "benchmarks.scaling:build",
        "params": params,
        "threads_per_worker": threads,
    }


def _clips_per_s(checkpoint: Path, skip: int) -> float:
    curve = json.loads((checkpoint / "state.json").read_text())["loop"]["curve"]
    rates = [c["train/clips_per_s"] for c in curve[skip:]] or [c["train/clips_per_s"] for c in curve]
    return statistics.median(rates)


def measure(size: str, batch: int, steps: int, workers: Iterable[int], device: str = "cpu") -> list[dict[str, Any]]:
    """Clips/s of ``steps`` pretraining steps for each worker count (Ray local cluster on 127.0.0.1)."""
    from avf.runtime import cluster
    from avf.train import launch

    cores = os.cpu_count() or 1
    counts = list(workers)
    out = []
    with tempfile.TemporaryDirectory(prefix="avf-scaling-") as tmp:
        os.environ.setdefault("AVF_RAY_TMP", str(Path(tmp) / "ray"))
        cluster.ensure_cluster(RayConfig(num_workers=max(counts), cpus_per_worker=1.0, use_gpu=device == "cuda"))
        try:
            for n in counts:
                threads = max(1, cores // n)
                cfg = RayConfig(num_workers=n, cpus_per_worker=1.0, use_gpu=device == "cuda", max_failures=0)
                result = launch.run(bench_config(size, batch, steps, threads), cfg, f"w{n}", Path(tmp) / "runs")
                rate = _clips_per_s(result.checkpoint, 2)
                out.append({"workers": n, "threads_per_worker": threads, "clips_per_s": rate})
        finally:
            cluster.shutdown()
    for row in out:
        row["speedup"] = row["clips_per_s"] / out[0]["clips_per_s"]
    return out


def projection(loader_clips_per_core: float | None = None, mfu: float = ASSUMED_MFU) -> dict[str, Any]:
    """Hours for 1.09M clips x 100 epochs on 8 and 64 H100s per size (see the module doc)."""
    from benchmarks.cases import forward_gflops_per_clip

    per_core = loader_clips_per_core or DEFAULT_LOADER_CLIPS_PER_CORE
    rows = []
    for size in ("base", "large", "huge"):
        train_flops = 3 * forward_gflops_per_clip("pretrain", size) * 1e9
        per_gpu = mfu * H100_BF16_DENSE / train_flops
        for gpus, eff in DP_EFFICIENCY.items():
            rate = gpus * per_gpu * eff
            rows.append(
                {
                    "size": size,
                    "gpus": gpus,
                    "train_gflops_per_clip": train_flops / 1e9,
                    "clips_per_s_per_gpu": per_gpu,
                    "clips_per_s": rate,
                    "hours": PAPER_CLIPS * PAPER_EPOCHS / rate / 3600,
                    "loader_cores_per_gpu": per_gpu / per_core,
                }
            )
    return {
        "rows": rows,
        "assumptions": {
            "gpu": "H100 SXM, dense bf16 peak 989.4 TFLOP/s",
            "mfu": mfu,
            "data_parallel_efficiency": DP_EFFICIENCY,
            "training_flops": "3 x forward FLOPs (torch.utils.flop_counter: matmul, conv, attention)",
            "loader_clips_per_s_per_core": per_core,
            "loader_source": "measured shard loader" if loader_clips_per_core else "default (not measured)",
            "clips": PAPER_CLIPS,
            "epochs": PAPER_EPOCHS,
        },
        "assumptions_short": f"MFU {mfu:.0%} of 989 TFLOP/s, DP efficiency 95% (8) / 85% (64)",
    }


def run(quick: bool = True, device: str = "cpu", loader_clips_per_core: float | None = None) -> dict[str, Any]:
    size, batch = "tiny", 8
    steps = 8 if quick else 20
    measured = measure(size, batch, steps, (1, 2), device)
    return {
        "model": f"avf_mae_pp_pretrain_{size}",
        "batch": batch,
        "steps": steps,
        "measured": measured,
        "projection": projection(loader_clips_per_core),
    }
