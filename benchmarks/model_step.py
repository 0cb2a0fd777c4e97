"""Pretraining step cost of AVF-MAE++ next to a plain timm ViT stack with the same tokens and widths.

Measures one optimizer-free training step (forward + backward) of ``avf_mae_pp_pretrain_<size>`` with the
default dual masks, and of a reference built from ``timm.models.vision_transformer.Block`` that sees the
same token counts at the same widths (video encoder 80 + 8 tokens, audio encoder 24 + 8, fusion 80 / 24,
decoders 480 / 88, same patch embeddings and heads), in the same process. Prints time per step, peak
memory per clip, forward GFLOPs per clip and the ratios ours / plain. The time ratio divided by the FLOP
ratio says how close the LG blocks and the fusion run to the speed of the raw compute.

Usage::

    .venv/bin/python benchmarks/model_step.py                 # base, batch 2, 3 timed steps (CPU: minutes)
    .venv/bin/python benchmarks/model_step.py --quick         # base, batch 2, 1 timed step
    .venv/bin/python benchmarks/model_step.py --size tiny --iters 1 --warmup 0
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import multiprocessing
import resource
import statistics
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import torch
from torch import Tensor, nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from avf.config.model import MaskingConfig
from avf.models import SIZES, create_model, model_name
from avf.models.masking import Masks, sample_masks
from avf.models.summary import count_flops
from benchmarks.harness import cpu_line, machine_info


class PlainStack(nn.Module):
    """timm ViT blocks with the token counts and widths of one AVF-MAE++ pretraining step."""

    def __init__(self, size: str, nv: int = 80, na: int = 24, dv: int = 400, da: int = 64) -> None:
        from timm.models.vision_transformer import Block

        super().__init__()
        s = SIZES[size]
        self.n = (nv, na, dv, da)
        k = 8  # region tokens per encoder

        def stack(depth: int, dim: int, heads: int) -> nn.Sequential:
            return nn.Sequential(*(Block(dim, heads, qkv_bias=True) for _ in range(depth)))

        self.embed_v, self.embed_a = nn.Linear(1536, s.dim), nn.Linear(256, s.dim)
        self.region = nn.Parameter(torch.zeros(1, k, s.dim))
        self.enc_v, self.enc_a = stack(s.depth, s.dim, s.num_heads), stack(s.depth, s.dim, s.num_heads)
        self.fuse_v = stack(s.fusion_depth, s.dim, s.num_heads)
        self.fuse_a = stack(s.fusion_depth, s.dim, s.num_heads)
        self.e2d_v, self.e2d_a = nn.Linear(s.dim, s.decoder_dim), nn.Linear(s.dim, s.decoder_dim)
        self.dec_v = stack(s.decoder_depth, s.decoder_dim, s.decoder_heads)
        self.dec_a = stack(s.decoder_depth, s.decoder_dim, s.decoder_heads)
        self.head_v, self.head_a = nn.Linear(s.decoder_dim, 1536), nn.Linear(s.decoder_dim, 256)

    def _branch(self, x: Tensor, embed: nn.Module, enc: nn.Module, fuse: nn.Module, e2d: nn.Module,
                dec: nn.Module, head: nn.Module, n_dec: int) -> Tensor:  # fmt: skip
        b = x.shape[0]
        h = enc(torch.cat((self.region.expand(b, -1, -1), embed(x)), dim=1))[:, self.region.shape[1] :]
        h = e2d(fuse(h))
        h = dec(torch.cat((h, h.new_zeros(b, n_dec, h.shape[-1])), dim=1))
        return head(h[:, -n_dec:])

    def forward(self, patches_v: Tensor, patches_a: Tensor) -> Tensor:
        _, _, dv, da = self.n
        pv = self._branch(patches_v, self.embed_v, self.enc_v, self.fuse_v, self.e2d_v, self.dec_v, self.head_v, dv)
        pa = self._branch(patches_a, self.embed_a, self.enc_a, self.fuse_a, self.e2d_a, self.dec_a, self.head_a, da)
        return pv.pow(2).mean() + pa.pow(2).mean()


@contextlib.contextmanager
def peak_memory(device: torch.device) -> Iterator[list[int]]:
    """Yields a one-element list that holds the peak extra bytes used inside the block."""
    result = [0]
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        yield result
        torch.cuda.synchronize()
        result[0] = torch.cuda.max_memory_allocated() - base
        return
    import psutil

    proc = psutil.Process()
    gc.collect()
    base = proc.memory_info().rss
    peak = [base]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], proc.memory_info().rss)
            time.sleep(0.002)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield result
    finally:
        stop.set()
        thread.join()
        result[0] = max(peak[0], proc.memory_info().rss) - base


def measure(
    step: Callable[[], None], device: torch.device, warmup: int, iters: int, isolated: bool
) -> tuple[float, int]:
    """Median seconds per step and peak extra bytes (over the memory held before the first step).

    ``isolated``: this process runs only this case, so the CPU peak is the lifetime peak RSS
    (``ru_maxrss``) minus the RSS before the first step; otherwise RSS is sampled in a thread.
    """

    def timed() -> list[float]:
        for _ in range(warmup):
            step()
        times = []
        for _ in range(iters):
            if device.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            step()
            if device.type == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - t0)
        return times

    if device.type == "cpu" and isolated:
        import psutil

        gc.collect()
        base = psutil.Process().memory_info().rss
        times = timed()
        return statistics.median(times), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - base
    with peak_memory(device) as peak:
        times = timed()
    return statistics.median(times), peak[0]


def run_case(case: str, size: str, batch: int, warmup: int, iters: int, device: str, threads: int,
             isolated: bool) -> tuple[float, int]:  # fmt: skip
    """Build ``case`` ("ours" or "plain") with its inputs and measure one training step."""
    if threads:
        torch.set_num_threads(threads)
    dev = torch.device(device)
    torch.manual_seed(0)
    if case == "ours":
        model = create_model(model_name("pretrain", size)).to(dev)
        video, audio, masks = _inputs(batch, dev)

        def step() -> None:
            model.zero_grad(set_to_none=True)
            model(video, audio, masks).loss.backward()

    else:
        model = PlainStack(size).to(dev)
        pv, pa = torch.randn(batch, 80, 1536, device=dev), torch.randn(batch, 24, 256, device=dev)

        def step() -> None:
            model.zero_grad(set_to_none=True)
            model(pv, pa).backward()

    return measure(step, dev, warmup, iters, isolated)


def forward_gflops(build: Callable[[], nn.Module], run: Callable[[nn.Module, torch.device], object]) -> float:
    """Forward GFLOPs for batch 1 counted on the meta device by :func:`avf.models.summary.count_flops`, of the
    model as defined."""
    with torch.device("meta"):
        model = build()
    return count_flops(lambda: run(model.eval(), torch.device("meta"))) / 1e9


def _inputs(batch: int, device: torch.device) -> tuple[Tensor, Tensor, Masks]:
    g = torch.Generator().manual_seed(0)
    video = torch.randn(batch, 3, 16, 160, 160, generator=g).to(device)
    audio = torch.randn(batch, 1, 256, 128, generator=g).to(device)
    return video, audio, sample_masks(batch, MaskingConfig(), torch.Generator().manual_seed(0))


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", default="base", choices=sorted(SIZES))
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--iters", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="batch 2, no warm-up, one timed step")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: leave as is)")
    parser.add_argument(
        "--no-isolate",
        dest="isolate",
        action="store_false",
        help="measure both cases in this process (faster; CPU peak memory from sampled RSS is less exact)",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.batch_size, args.warmup, args.iters = 2, 0, 1
    if args.threads:
        torch.set_num_threads(args.threads)
    batch = max(args.batch_size, 2)  # the ER layer's BatchNorm needs 2 clips in training mode
    print(cpu_line(machine_info()), flush=True)
    device = torch.device(args.device)
    name = model_name("pretrain", args.size)
    results = {}
    for case in ("ours", "plain"):
        case_args = (case, args.size, batch, args.warmup, args.iters, args.device, args.threads, args.isolate)
        if args.isolate:
            with multiprocessing.get_context("spawn").Pool(1) as pool:
                results[case] = pool.apply(run_case, case_args)
        else:
            results[case] = run_case(*case_args)
            gc.collect()
    (t_ours, mem_ours), (t_plain, mem_plain) = results["ours"], results["plain"]

    def run_ours(model: nn.Module, dev: torch.device) -> object:
        v, a, m = _inputs(1, dev)
        return model(v, a, m)

    def run_plain(model: nn.Module, dev: torch.device) -> object:
        return model(torch.zeros(1, 80, 1536, device=dev), torch.zeros(1, 24, 256, device=dev))

    f_ours = forward_gflops(lambda: create_model(name), run_ours)
    f_plain = forward_gflops(lambda: PlainStack(args.size), run_plain)

    mib = 1024**2
    threads = torch.get_num_threads() if device.type == "cpu" else "-"
    print(f"device {device} (torch threads {threads}), batch {batch}, {args.iters} timed step(s)")
    print(f"{'model':45s} {'step s':>8s} {'s/clip':>8s} {'peak MiB/clip':>14s} {'fwd GFLOP/clip':>15s}")
    for label, t, mem, fl in (
        (name, t_ours, mem_ours, f_ours),
        ("plain timm ViT stack (same tokens/widths)", t_plain, mem_plain, f_plain),
    ):
        print(f"{label:45s} {t:8.3f} {t / batch:8.3f} {mem / batch / mib:14.1f} {fl:15.2f}")
    ratios = {
        "time": t_ours / t_plain,
        "memory": mem_ours / max(mem_plain, 1),
        "flops": f_ours / f_plain,
    }
    ratios["time_per_flop"] = ratios["time"] / ratios["flops"]
    print(
        f"ratio ours / plain: time {ratios['time']:.2f}x, peak memory {ratios['memory']:.2f}x, "
        f"FLOPs {ratios['flops']:.2f}x, time per FLOP {ratios['time_per_flop']:.2f}x"
    )
    return {"step_s": t_ours, "plain_step_s": t_plain, **ratios}


if __name__ == "__main__":
    main()
