"""``python -m benchmarks``: training, inference, data and scaling throughput of AVF-MAE++, side by side.

Per size (``--sizes tiny,base``) and device (``--device cpu|cuda``; bf16 autocast on a GPU):

* pretraining step (forward + backward + AdamW): ours, the official code (``--official-dir`` /
  ``AVF_OFFICIAL_DIR``; base and larger only) and a plain timm ViT stack with the same token counts and
  widths, alternated round-robin in one process; clips/s, memory (optimizer state, activations per
  clip), model FLOPs utilisation against a square matmul timed in the same rotation;
* fine-tuning step (one view per clip) and inference under each test protocol (ours 2 views, the
  official 4 views), the same way;
* activation memory by module (bytes autograd saves for backward, ours vs official);
* preprocessing / loader throughput (``benchmarks/preprocess.py``'s ``main``, in a child process);
* Ray scaling: clips/s with 1 and 2 workers (``benchmarks/scaling.py``) and a wall-clock projection.

A run prints the CPU's matmul features; on the CPU, its fp32 (and, with bf16 units, bf16) square-matmul rates;
each CPU size ends with its compute targets, every ratio from the run with met/missed (:func:`compute_targets`).
Peak RSS growth per clip has its own command, ``python -m benchmarks.rss``.

Prints tables and writes ``reports/bench/bench-<time>.json`` and ``reports/bench/latest.json``.
``--quick`` (batch 4, 2 timed rounds, tiny + base) finishes in under 10 minutes on 2 cores.

OpenMP's spinning wait makes a 2-thread step 2-10x slower when other processes load the cores; the
benchmark therefore sets ``OMP_WAIT_POLICY=PASSIVE`` before torch starts (unless already set).
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import gc
import json
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from avf.utils.cpu import bf16_units  # noqa: E402
from benchmarks import cases, harness, official  # noqa: E402
from benchmarks.harness import MiB, Runner  # noqa: E402

OUT_DIR = ROOT / "reports" / "bench"


def _args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="2 timed rounds, batch 4, short data/scaling runs")
    p.add_argument("--sizes", default="tiny,base", help="comma-separated model sizes (tiny, base, large, huge)")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--official-dir", default=None, help=f"scratch checkout of XuecWu/AVF-MAE (or ${official.ENV})")
    p.add_argument("--batch", type=int, default=None, help="clips per training step (CPU 4, GPU 64)")
    p.add_argument("--infer-clips", type=int, default=None, help="clips per inference step (CPU 2, GPU 16)")
    p.add_argument("--rounds", type=int, default=None, help="timed round-robin rounds (quick 2, full 5)")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument(
        "--only",
        default="pretrain,finetune,inference,memory,data,scaling",
        help="sections to run (comma-separated subset of the default)",
    )
    p.add_argument("--compile", action="store_true", help="also time ours under torch.compile (model.compile)")
    p.add_argument(
        "--extras",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="also measure ours with activation checkpointing and (CPU) bf16 autocast (default: full runs only)",
    )
    p.add_argument("--out", type=Path, default=None, help="JSON path (default reports/bench/bench-<time>.json)")
    return p.parse_args(argv)


def _fmt(v: float, nd: int = 2) -> str:
    return "-" if v != v else f"{v:.{nd}f}"  # NaN -> "-"


class Report:
    """Collects result rows and prints them as aligned tables."""

    def __init__(self) -> None:
        self.data: dict[str, Any] = {"sections": {}}

    def table(self, title: str, header: list[str], rows: list[list[str]]) -> None:
        widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)]
        print(f"\n== {title}")
        print(
            "  ".join(h.ljust(w) if i == 0 else h.rjust(w) for i, (h, w) in enumerate(zip(header, widths, strict=True)))
        )
        for r in rows:
            print(
                "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True)))
            )
        sys.stdout.flush()


def _free(*runners: Runner | None) -> None:
    for r in runners:
        if r is not None:
            r.model = r.optimizer = None
            r.step = r.forward = None  # type: ignore[assignment]
    gc.collect()


def compare(
    builders: list[Callable[[], Runner]],
    device: torch.device,
    rounds: int,
    flops: dict[str, float],
    dtype: torch.dtype,
    memory: set[str],
    by_module: set[str],
) -> dict[str, Any]:
    """Build the runners; profile memory (runners named in ``memory``; it warms them up too) and saved
    tensors (``by_module``); then time all of them round-robin with the matmul probe in the rotation."""
    runners = [b() for b in builders]
    out: dict[str, Any] = {"rounds": rounds, "cases": {}}
    for r in runners:
        res: dict[str, Any] = {"clips_per_step": r.clips, **r.info}
        if r.name in memory and r.model is not None:
            res["memory"] = harness.memory_profile(r).as_dict(r.clips)
        if r.name in by_module and r.forward is not None and r.model is not None:
            total, mods = harness.saved_tensor_bytes(r.model, r.forward)
            r.model.zero_grad(set_to_none=True)
            res["saved_for_backward_mib_per_clip"] = total / MiB / r.clips
            res["saved_by_module_mib_per_clip"] = {k: v / MiB / r.clips for k, v in mods.items()}
        out["cases"][r.name] = res
    warm = [r for r in runners if "memory" not in out["cases"][r.name]]
    for r in warm:  # the memory profile already ran three steps of the others
        r.step()
    times, peaks = harness.time_alternating(
        runners, rounds, warmup=0, extra=lambda: harness.matmul_flops(device, dtype)
    )
    peak = max(peaks)
    sheet = harness.datasheet_peak(device, dtype)
    out["matmul_flops_per_s"], out["matmul_samples"], out["datasheet_flops_per_s"] = peak, peaks, sheet
    for r in runners:
        t = harness.median(times[r.name])
        work = flops.get(r.name, float("nan"))  # FLOPs of one step (fwd, or 3x fwd for training)
        out["cases"][r.name].update(
            step_s=t,
            step_s_samples=times[r.name],
            clips_per_s=r.clips / t,
            step_flops=work,
            mfu_matmul=work / t / peak,  # against the best matmul measured here
            mfu=work / t / sheet if sheet else float("nan"),  # against the datasheet (the usual MFU)
        )
    _free(*runners)
    return out


def _print_compare(report: Report, title: str, result: dict[str, Any], ref: str | None) -> None:
    rows = []
    cases_ = result["cases"]
    base = cases_.get(ref) if ref else None
    for name, c in cases_.items():
        mem = c.get("memory", {})
        ratio = c["clips_per_s"] / base["clips_per_s"] if base else float("nan")
        act = mem.get("activations_mib_per_clip", float("nan"))
        act_ratio = act / base["memory"]["activations_mib_per_clip"] if base and "memory" in base else float("nan")
        rows.append(
            [
                name,
                _fmt(c["step_s"]),
                _fmt(c["clips_per_s"], 3),
                _fmt(ratio),
                _fmt(100 * c["mfu"], 1),
                _fmt(100 * c["mfu_matmul"], 1),
                _fmt(mem.get("optimizer_state_mib", float("nan")) / 1024, 2),
                _fmt(act, 0),
                _fmt(act_ratio),
                _fmt(mem.get("peak_fwd_bwd_mib", float("nan")) / 1024, 2),
            ]
        )
    header = ["case", "step s", "clips/s", "x ref", "MFU %", "MFU % matmul"]
    header += ["opt GiB", "act MiB/clip", "act x ref", "peak GiB"]
    sheet = result.get("datasheet_flops_per_s")
    peaks = f"matmul {result['matmul_flops_per_s'] / 1e9:.0f} GFLOP/s, datasheet " + (
        f"{sheet / 1e12:.0f} TFLOP/s" if sheet else "unknown (MFU % blank)"
    )
    report.table(f"{title}  ({peaks}; ref = {ref})", header, rows)


def run_model_sections(args: argparse.Namespace, report: Report, device: torch.device) -> None:
    bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()
    dtype = torch.bfloat16 if bf16 else torch.float32
    batch = args.batch or (64 if device.type == "cuda" else 4)
    infer_clips = args.infer_clips or (16 if device.type == "cuda" else 2)
    rounds = args.rounds or (2 if args.quick else 5)
    only = set(args.only.split(","))
    off_dir = official.official_dir(args.official_dir)
    off = official.load(off_dir) if off_dir is not None else None
    if off is None:
        print(official.why_skipped(args.official_dir))
    else:
        print(f"official code: {off_dir} (shims: {'; '.join(official.SHIMS)})")
    report.data["official"] = {"dir": str(off_dir) if off_dir else None, "shims": official.SHIMS if off else []}

    def mem_cases(fl: dict[str, float]) -> set[str]:  # the plain reference's memory only in full runs
        if "memory" not in only:
            return set()
        return {n for n in fl if not (args.quick and n.startswith("plain"))}

    def mod_cases(fl: dict[str, float]) -> set[str]:
        return {n for n in fl if "memory" in only and not n.startswith("plain")}

    for size in args.sizes.split(","):
        with_off = off is not None and size in official.CONFIGS
        f_pre = cases.forward_gflops_per_clip("pretrain", size) * 1e9
        f_ft = cases.forward_gflops_per_clip("finetune", size) * 1e9
        f_plain_pre = cases.forward_gflops_per_clip("plain_pretrain", size) * 1e9
        f_plain_ft = cases.forward_gflops_per_clip("plain_finetune", size) * 1e9
        sec: dict[str, Any] = {
            "forward_gflops_per_clip": {"pretrain": f_pre / 1e9, "finetune_per_view": f_ft / 1e9},
            "plain_forward_gflops_per_clip": {"pretrain": f_plain_pre / 1e9, "finetune_per_view": f_plain_ft / 1e9},
            "batch": batch,
            "dtype": str(dtype),
        }
        if "inference" in only:  # what the per-view inference targets' bounds are computed over
            sec["executed_inference_gflops_per_view"] = cases.forward_gflops_per_clip("finetune", size, executed=True)
        if with_off and not args.quick:  # the official forward runs for real (its tables are CPU tensors)
            sec["official_forward_gflops_per_clip"] = {
                "pretrain": official.forward_gflops_per_clip(off, "pretrain", size),
                "finetune_per_view": official.forward_gflops_per_clip(off, "finetune", size),
            }
        # Model FLOPs: the function's own FLOPs (ours counted) for ours and the official code alike.
        ours_name, off_name, plain_name = f"ours {size}", f"official {size}", f"plain ViT {size}"
        extra: dict[str, Any] = {"bf16": bf16} if device.type == "cuda" else {}
        for kind in ("pretrain", "finetune"):
            if kind not in only:
                continue
            ours_b = cases.ours_pretrain if kind == "pretrain" else cases.ours_finetune
            f_ours, f_plain = (f_pre, f_plain_pre) if kind == "pretrain" else (f_ft, f_plain_ft)
            title = f"{size} pretraining step" if kind == "pretrain" else f"{size} fine-tuning step (1 view)"
            b: list[Callable[[], Runner]] = [partial(ours_b, size, batch, device, **extra)]
            if with_off:
                off_b = official.official_pretrain if kind == "pretrain" else official.official_finetune
                b.append(partial(off_b, off, size, batch, device))
            plain_b = cases.plain_pretrain if kind == "pretrain" else cases.plain_finetune
            b.append(partial(plain_b, size, batch, device, **extra))
            fl = {ours_name: 3 * f_ours * batch, off_name: 3 * f_ours * batch, plain_name: 3 * f_plain * batch}
            res = compare(b, device, rounds, fl, dtype, mem_cases(fl), mod_cases(fl))
            sec[kind] = res
            _print_compare(report, f"{title}, batch {batch}", res, off_name if with_off else None)
            if "memory" in only:
                _print_modules(report, f"{size} {kind}: saved for backward, MiB/clip", res)
            variants = _variants(args, ours_b, size, batch, device, bf16)
            if variants:  # a second rotation (three base models at a time fit in memory, five do not)
                b = [partial(ours_b, size, batch, device, **extra), *(build for _, build in variants)]
                fl = {ours_name: fl[ours_name], **{f"{ours_name} {label}": fl[ours_name] for label, _ in variants}}
                res = compare(b, device, rounds, fl, dtype, mem_cases(fl), set())
                sec[f"{kind}_variants"] = res
                _print_compare(report, f"{title} of ours: variants, batch {batch}", res, ours_name)
        if "inference" in only:
            ours_inf = f"ours {size} ({cases.TEST_VIEWS} views)"
            off_inf = f"official {size} ({official.OFFICIAL_VIEWS} views)"
            b = [partial(cases.ours_inference, size, infer_clips, device, **extra)]
            if with_off:
                b.append(partial(official.official_inference, off, size, infer_clips, device))
            b.append(partial(cases.plain_inference, size, infer_clips, device, **extra))
            if device.type == "cpu":  # `avf predict --runtime onnxruntime`, and `--precision bf16` where it is fast
                b.append(partial(cases.ours_inference_onnx, size, infer_clips, device))
                if bf16_units():
                    b.append(partial(_variant, "bf16 autocast", cases.ours_inference, size, infer_clips, device,
                                     bf16=True))  # fmt: skip
                else:
                    print("CPU without bf16 matrix units: the bf16 inference row is skipped (it would be emulated)")
            fl = {
                ours_inf: f_ft * cases.TEST_VIEWS * infer_clips,
                f"{ours_inf} bf16 autocast": f_ft * cases.TEST_VIEWS * infer_clips,
                f"ours {size} ONNX Runtime ({cases.TEST_VIEWS} views)": f_ft * cases.TEST_VIEWS * infer_clips,
                off_inf: f_ft * official.OFFICIAL_VIEWS * infer_clips,
                f"plain ViT {size} ({cases.TEST_VIEWS} views)": f_plain_ft * cases.TEST_VIEWS * infer_clips,
            }
            res = compare(b, device, rounds, fl, dtype, set(), set())
            sec["inference"] = res
            _print_compare(report, f"{size} inference per clip (test protocol), {infer_clips} clip(s)/step", res,
                           off_inf if with_off else None)  # fmt: skip
        report.data["sections"][f"{device.type}/{size}"] = sec


def probe_cpu_rates(report: Report) -> None:
    """The CPU's square-matmul rates before the model sections (:func:`print_targets` probes again after)."""
    rates = report.data["matmul_rates"] = harness.cpu_matmul_rates()
    bf16_rate = rates["bf16"]
    print(
        f"CPU matmul, 2048^3, {torch.get_num_threads()} threads: fp32 {rates['fp32'] / 1e9:.0f} GFLOP/s, "
        + (
            f"bf16 {bf16_rate / 1e9:.0f} GFLOP/s ({bf16_rate / rates['fp32']:.1f}x fp32)"
            if bf16_rate
            else "bf16 not measured (no bf16 matrix units: it would be emulated)"
        )
    )


def print_targets(report: Report) -> None:
    """Each size's compute targets (a CPU run), against the better of the first matmul probe and one taken now."""
    first, last = report.data["matmul_rates"], harness.cpu_matmul_rates()
    rates = report.data["matmul_rates"] = {
        k: max(first[k], last[k]) if first[k] and last[k] else None for k in ("fp32", "bf16")
    }
    for key, sec in report.data["sections"].items():
        size = key.split("/")[1]
        sec["targets"] = compute_targets(sec, size, rates, report.data["machine"]["cpu_features"])
        print(f"\n== {size}: compute targets (ratios from this run)")
        for line in sec["targets"]:
            print(f"  {line}")


def compute_targets(
    sec: dict[str, Any], size: str, rates: dict[str, float | None], cpu_features: list[str]
) -> list[str]:
    """The compute targets of one CPU section, each ratio from this run with met/missed (or why not measured)."""
    ours, off, ort = f"ours {size}", f"official {size}", f"ours {size} ONNX Runtime ({cases.TEST_VIEWS} views)"
    lines = []

    def verdict(ratio: float, target: float) -> str:
        return f"{ratio:.2f}x (target >= {target:g}x: {'met' if ratio >= target else 'missed'})"

    def inference_bound(ratio: float, target: float, views_per_s: float) -> str:
        """What a missed per-view target asks of this CPU: the fp32 matmul rate share of the FLOPs it executes."""
        executed, rate = sec.get("executed_inference_gflops_per_view"), rates.get("fp32")
        if ratio >= target or not executed or not rate:
            return ""
        share = target / ratio * views_per_s * executed * 1e9 / rate
        return (
            f"; {target:g}x needs {100 * share:.0f}% of the fp32 matmul rate over the {executed:.1f} GFLOPs of a view"
        )

    for kind, label in (("pretrain", "pretraining"), ("finetune", "fine-tuning")):
        c = sec.get(kind, {}).get("cases", {})
        if ours in c and off in c:
            ratio = c[ours]["clips_per_s"] / c[off]["clips_per_s"]
            lines.append(f"fp32 {label} step vs the official code: {verdict(ratio, 1.3)}")
        elif ours in c:
            lines.append(f"fp32 {label} step vs the official code: not measured (no official code)")
    inf = sec.get("inference", {}).get("cases", {})
    ours_inf, off_inf = f"ours {size} ({cases.TEST_VIEWS} views)", f"official {size} ({official.OFFICIAL_VIEWS} views)"
    if ours_inf in inf and off_inf in inf:  # views per second: each protocol's views count alike
        views = inf[ours_inf]["clips_per_s"] * cases.TEST_VIEWS
        ratio = views / (inf[off_inf]["clips_per_s"] * official.OFFICIAL_VIEWS)
        bound = inference_bound(ratio, 1.3, views)
        lines.append(f"fp32 inference per view vs the official code: {verdict(ratio, 1.3)}{bound}")
    if ours_inf in inf and ort in inf:
        ratio = inf[ort]["clips_per_s"] / inf[ours_inf]["clips_per_s"]
        bound = inference_bound(ratio, 1.5, inf[ort]["clips_per_s"] * cases.TEST_VIEWS)
        lines.append(f"ONNX Runtime inference per view vs our eager fp32: {verdict(ratio, 1.5)}{bound}")
    bf16_case = sec.get("pretrain_variants", {}).get("cases", {}).get(f"{ours} bf16 autocast")
    fp32_case = sec.get("pretrain_variants", {}).get("cases", {}).get(ours)
    if rates.get("bf16") is None:
        lines.append("bf16 pretraining step: skipped (no bf16 matrix units: bf16 would be emulated)")
    elif bf16_case is None or fp32_case is None:
        lines.append("bf16 pretraining step: not measured (it needs the pretrain section and --extras)")
    else:
        mfu = bf16_case["step_flops"] / bf16_case["step_s"] / rates["bf16"]
        speedup = fp32_case["step_s"] / bf16_case["step_s"]
        amx = "amx_bf16" in cpu_features
        target = "target >= 35%: " + ("met" if mfu >= 0.35 else "missed") if amx else "the 35% target is for AMX CPUs"
        lines.append(
            f"bf16 pretraining step: MFU {100 * mfu:.1f}% of the bf16 matmul rate ({target}), "
            f"{speedup:.2f}x our fp32 step"
        )
    return lines


def _variant(label: str, build: Callable[..., Runner], *args: Any, **kwargs: Any) -> Runner:
    r = build(*args, **kwargs)
    r.name = f"{r.name} {label}"
    return r


def _variants(
    args: argparse.Namespace, build: Callable[..., Runner], size: str, batch: int, device: torch.device, bf16: bool
) -> list[tuple[str, Callable[[], Runner]]]:
    """Extra rows of ours: torch.compile (``--compile``), activation checkpointing and CPU bf16 autocast
    (``--extras``, on in full runs)."""
    out = []
    if args.compile:
        out.append(("compiled", partial(_variant, "compiled", build, size, batch, device, compile=True, bf16=bf16)))
    if args.extras:
        ckpt = partial(_variant, "grad ckpt", build, size, batch, device, grad_checkpointing=True, bf16=bf16)
        out.append(("grad ckpt", ckpt))
        if device.type == "cpu":
            out.append(("bf16 autocast", partial(_variant, "bf16 autocast", build, size, batch, device, bf16=True)))
    return out


def _print_modules(report: Report, title: str, res: dict[str, Any]) -> None:
    names = [n for n, c in res["cases"].items() if "saved_by_module_mib_per_clip" in c and "plain" not in n]
    if not names:
        return
    mods: list[str] = []
    for n in names:
        for m in list(res["cases"][n]["saved_by_module_mib_per_clip"])[:8]:
            if m not in mods:
                mods.append(m)
    rows = [["total", *(_fmt(res["cases"][n]["saved_for_backward_mib_per_clip"], 1) for n in names)]]
    for m in mods:
        rows.append([m, *(_fmt(res["cases"][n]["saved_by_module_mib_per_clip"].get(m, 0.0), 1) for n in names)])
    report.table(title, ["module (innermost)", *names], rows)


def run_data_section(args: argparse.Namespace, report: Report) -> None:
    """``benchmarks/preprocess.py``'s ``main`` in a spawned child (it pins torch and OpenCV to 1 thread)."""
    from benchmarks import data

    argv = ["--quick"] if args.quick else []
    argv += ["--out", str(OUT_DIR / "preprocess.json")]
    try:
        res = data.run(argv)
    except Exception as exc:  # a failed data benchmark is reported; the model sections' results stay
        print(f"\n== data: benchmarks/preprocess.py failed: {exc!r}")
        report.data["data"] = {"error": repr(exc)}
        return
    rows = []
    nan = float("nan")
    for r in res.get("runs", []):
        ld = r.get("loader", {})
        # the official layout's keys vary with preprocess.py's version: official[_<side>px]_jpeg_folders_...
        sides = sorted(k for k in ld if k.startswith("official") and k.endswith("jpeg_folders_clips_per_s"))
        jpeg = ", ".join(f"{k.split('_')[1] if k.count('_') > 5 else 'official'} {ld[k]:.1f}" for k in sides) or "-"
        best_jpeg = max((ld[k] for k in sides), default=nan)
        rows.append(
            [
                str(r.get("clip", {}).get("size", "?")),
                _fmt(r.get("decode_only", {}).get("clips_per_s_per_core", nan)),
                _fmt(r.get("pipeline", {}).get("clips_per_s_per_core", nan)),
                f"{_fmt(r.get('overhead_vs_decode', nan))} ({r.get('overhead_target', 'no target')})",
                _fmt(ld.get("shards_clips_per_s", nan), 1),
                jpeg,
                _fmt(ld.get("shards_clips_per_s", nan) / best_jpeg, 1),
                _fmt(ld.get("shards_uint8_clips_per_s", nan) / best_jpeg, 1),
            ]
        )
    header = ["clips", "decode c/s/core", "preproc c/s/core", "overhead x", "shards c/s", "JPEG dirs c/s", "x best",
              "x best, uint8"]  # fmt: skip
    report.table(
        "data (benchmarks/preprocess.py, 1 core; targets: overhead <= 1.5x at 640x360 and < 1x at 1280x720, "
        "shards >= 3x the best JPEG folders; x best: float32 both, uint8: ours as a GPU trainer receives it)",
        header,
        rows,
    )
    report.data["data"] = res


def run_scaling_section(args: argparse.Namespace, report: Report) -> None:
    from benchmarks import scaling

    loader = None
    runs = report.data.get("data", {}).get("runs") or []
    if runs:  # the shard loader's uint8 clips/s on one core (a GPU normalises them; preprocess.py: 1 thread)
        loader = min(r["loader"]["shards_uint8_clips_per_s"] for r in runs)
    try:
        res = scaling.run(quick=args.quick, device=args.device, loader_clips_per_core=loader)
    except Exception as exc:  # Ray missing or refusing to start here: report it, keep the other results
        print(f"\n== scaling: Ray run failed: {exc!r}")
        report.data["scaling"] = {"error": repr(exc), "projection": scaling.projection(loader)}
        return
    report.data["scaling"] = res
    rows = [[str(w["workers"]), _fmt(w["clips_per_s"], 2), _fmt(w["speedup"], 2)] for w in res["measured"]]
    report.table(f"Ray workers, {res['model']} pretraining, batch {res['batch']} (measured here)",
                 ["workers", "clips/s", "x 1 worker"], rows)  # fmt: skip
    rows = [
        [p["size"], str(p["gpus"]), _fmt(p["clips_per_s"], 0), _fmt(p["hours"], 1), _fmt(p["loader_cores_per_gpu"], 0)]
        for p in res["projection"]["rows"]
    ]
    report.table(
        "projected paper pretraining (1.09M clips x 100 epochs) on H100s: " + res["projection"]["assumptions_short"],
        ["size", "GPUs", "clips/s", "hours", "loader cores/GPU"],
        rows,
    )


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = _args(argv)
    if args.extras is None:
        args.extras = not args.quick
    warnings.filterwarnings("ignore")
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    report = Report()
    report.data["args"] = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    report.data["env"] = {"OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY")}
    t0 = time.perf_counter()
    only = set(args.only.split(","))
    with harness.load_sampler() as load:
        report.data["machine"] = harness.machine_info()
        print(harness.cpu_line(report.data["machine"]))
        if device.type == "cuda" and not torch.cuda.is_available():
            print("GPU benchmarks skipped: no CUDA device here (the bf16 GPU path runs where one is present)")
            report.data["skipped"] = "no CUDA device"
        elif only & {"pretrain", "finetune", "inference"}:
            if device.type == "cuda":
                report.data["machine"].update(harness.machine_info(device))
            else:
                probe_cpu_rates(report)
            run_model_sections(args, report, device)
            if device.type == "cpu":
                print_targets(report)
        if "data" in only and device.type == "cpu":
            run_data_section(args, report)
        if "scaling" in only and (device.type == "cpu" or torch.cuda.is_available()):
            run_scaling_section(args, report)
    report.data["load_avg_1min"] = {"min": min(load), "median": sorted(load)[len(load) // 2], "max": max(load)}
    report.data["wall_s"] = time.perf_counter() - t0
    print(
        f"\nwall {report.data['wall_s']:.0f} s; 1-min load average during the run: "
        f"min {min(load):.1f}, median {report.data['load_avg_1min']['median']:.1f}, max {max(load):.1f} "
        f"({os.cpu_count()} cores)"
    )
    out = args.out or OUT_DIR / f"bench-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(report.data, indent=2, default=str)
    out.write_text(text)
    if args.out is None:
        (OUT_DIR / "latest.json").write_text(text)
    print(f"wrote {out}")
    return report.data


if __name__ == "__main__":
    main()
