"""Peak resident memory of one training step as the operating system sees it, ours next to the official code.

``python -m benchmarks.rss --official-dir DIR`` (base, batch 4 and 8, 2 threads, fp32, CPU; Linux). Every case
and batch size runs in a fresh child process, so no case inherits another's heap:

1. build the case (``benchmarks.cases`` / ``benchmarks.official``, the steps the timing comparison runs; ours
   with the heap setting ``avf.train.loop.fit`` makes, :func:`avf.utils.heap.limit_heap_slack`) and run two
   steps, so the optimizer state and the allocator's pools exist;
2. run forward + backward once, so the gradients exist too; hand freed heap back to the kernel
   (``malloc_trim``), read the resident set, reset the kernel's high-water mark (``/proc/self/clear_refs``
   ``5``), run forward + backward again (the gradients accumulate in place), read ``VmHWM``; then the same
   for one whole step from freed gradients (optimizer included).

**Growth** is the high-water mark minus the resident set before: activations, temporaries and the
allocator's slack, everything the OS sees beyond parameters, gradients and optimizer state. **Per clip** is
the slope of the forward + backward growth between the two batch sizes, ``(growth(2B) - growth(B)) / B``,
what one more clip costs. The whole step's growth, at batch B, adds the gradients and the optimizer's
temporaries, which do not grow with the batch. ``--heap default`` measures ours with glibc's default heap
instead of avf's setting. Saved-for-backward bytes per clip (what autograd keeps,
:func:`benchmarks.harness.saved_tensor_bytes`) are measured in the same child. The target: per-clip growth
at most half the official code's, pretraining and fine-tuning.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import contextlib
import ctypes
import gc
import json
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

KINDS = ("pretrain", "finetune")
WHO = ("ours", "official")
TARGET = 0.5  # ours per clip over the official code's, at most
MiB = 1024**2


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def _trim_heap() -> None:
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):  # not glibc: freed heap stays resident, growth reads lower
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def _peak_growth(run: Callable[[], object]) -> float:
    """MiB the resident set peaks above its level before ``run()`` (freed heap handed back first)."""
    _trim_heap()
    before = _status_kib("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # the high-water mark restarts from the current resident set
    if _status_kib("VmHWM") > before + 16 * 1024:
        raise RuntimeError("the kernel did not reset the peak resident set (/proc/self/clear_refs)")
    run()
    return (_status_kib("VmHWM") - before) / 1024


def measure(kind: str, who: str, size: str, batch: int, official_dir: str | None, heap: str) -> dict[str, Any]:
    """One child's measurement (see the module docstring); MiB throughout."""
    import torch

    from avf.utils.heap import limit_heap_slack
    from benchmarks import cases, harness, official

    device = torch.device("cpu")
    if who == "ours":
        if heap == "limit":
            limit_heap_slack()  # as avf.train.loop.fit does before it builds the model
        runner = (cases.ours_pretrain if kind == "pretrain" else cases.ours_finetune)(size, batch, device)
    else:
        path = official.official_dir(official_dir)
        if path is None:
            raise SystemExit(official.why_skipped(official_dir))
        off = official.load(path)
        runner = (official.official_pretrain if kind == "pretrain" else official.official_finetune)(
            off, size, batch, device
        )
    model, forward = runner.model, runner.forward
    assert model is not None and forward is not None
    for _ in range(2):
        runner.step()

    def forward_backward() -> None:
        forward().backward()

    forward_backward()  # the gradients exist from here on, like the parameters: steady state, not growth
    fwd_bwd = _peak_growth(forward_backward)
    model.zero_grad(set_to_none=True)
    step = _peak_growth(runner.step)
    saved, _ = harness.saved_tensor_bytes(model, forward)
    return {
        "forward_backward_growth_mib": fwd_bwd,
        "step_growth_mib": step,
        "saved_for_backward_mib_per_clip": saved / MiB / batch,
        "steady_state_mib": {k: v / MiB for k, v in harness.steady_state(model, runner.optimizer).items()},
    }


def _child(
    kind: str, who: str, size: str, batch: int, threads: int, official_dir: str | None, heap: str
) -> dict[str, Any]:
    argv = [sys.executable, "-m", "benchmarks.rss", "--child", f"{kind},{who},{size},{batch}", "--heap", heap]
    argv += ["--threads", str(threads)] + (["--official-dir", official_dir] if official_dir else [])
    out = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"{who} {kind} batch {batch} failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def run(size: str, batch: int, threads: int, official_dir: str | None, heap: str = "limit") -> dict[str, Any]:
    """Both kinds, both codes (the official one where ``official_dir`` is a checkout with ``size``), batch and
    2 x batch; ``heap``: ours with avf's heap setting (``limit``) or glibc's default (``default``)."""
    from benchmarks import official

    who = WHO
    if official.official_dir(official_dir) is None:
        who = ("ours",)
        print(official.why_skipped(official_dir))
    elif size not in official.CONFIGS:
        who = ("ours",)
        print(f"official code skipped: it has no {size} model (sizes: {', '.join(official.CONFIGS)})")
    results: dict[str, Any] = {"size": size, "batch": batch, "threads": threads, "heap": heap, "cases": {}}
    for kind in KINDS:
        for w in who:
            runs = {b: _child(kind, w, size, b, threads, official_dir, heap) for b in (batch, 2 * batch)}
            small, large = runs[batch], runs[2 * batch]
            results["cases"][f"{w} {kind}"] = {
                "runs": {str(b): r for b, r in runs.items()},
                "growth_mib_per_clip": (large["forward_backward_growth_mib"] - small["forward_backward_growth_mib"])
                / batch,
                "saved_for_backward_mib_per_clip": large["saved_for_backward_mib_per_clip"],
            }
    return results


def report(results: dict[str, Any]) -> list[str]:
    """The table and the target lines."""
    b = results["batch"]
    lines = [
        f"peak RSS growth, {results['size']}, fp32, {results['threads']} threads, ours with heap "
        f"{results['heap']}, each case in a fresh process (MiB; "
        f"per clip: forward + backward at batch {2 * b} minus batch {b}, over {b})",
        f"{'case':<20} {'step, B=' + str(b):>12} {'fwd+bwd, B=' + str(b):>13} {'fwd+bwd, B=' + str(2 * b):>13} "
        f"{'per clip':>9} {'saved/clip':>11}",
    ]
    cases_ = results["cases"]
    for name, c in cases_.items():
        small, large = c["runs"][str(b)], c["runs"][str(2 * b)]
        lines.append(
            f"{name:<20} {small['step_growth_mib']:>12.0f} {small['forward_backward_growth_mib']:>13.0f} "
            f"{large['forward_backward_growth_mib']:>13.0f} {c['growth_mib_per_clip']:>9.0f} "
            f"{c['saved_for_backward_mib_per_clip']:>11.0f}"
        )
    for kind in KINDS:
        ours, off = cases_.get(f"ours {kind}"), cases_.get(f"official {kind}")
        if ours and off:
            ratio = ours["growth_mib_per_clip"] / off["growth_mib_per_clip"]
            verdict = "met" if ratio <= TARGET else "missed"
            lines.append(
                f"{kind}: peak RSS growth per clip {ratio:.2f}x the official code's (target <= {TARGET}x: {verdict})"
            )
    return lines


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="base")
    parser.add_argument("--batch", type=int, default=4, help="the smaller batch; the larger is twice it")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--official-dir", default=None)
    parser.add_argument(
        "--heap", choices=("limit", "default"), default="limit", help="ours with avf's heap setting or glibc's default"
    )
    parser.add_argument("--out", type=Path, default=ROOT / "reports" / "bench" / "rss.json")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    if args.child:
        kind, who, size, batch = args.child.split(",")
        print(json.dumps(measure(kind, who, size, int(batch), args.official_dir, args.heap)))
        return {}
    from avf.utils.io import write_json
    from benchmarks import harness

    machine = harness.machine_info()
    print(harness.cpu_line(machine), flush=True)
    results = run(args.size, args.batch, args.threads, args.official_dir, args.heap)
    results["machine"] = machine
    for line in report(results):
        print(line)
    write_json(args.out, results)
    print(f"wrote {args.out}")
    return results


if __name__ == "__main__":
    main()
