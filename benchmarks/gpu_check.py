"""The GPU check, one command where a GPU is lent: ``python -m benchmarks.gpu_check`` (under 10 minutes).

1. the ``gpu``-marked tests (``tests/gpu``): 2 training steps of pretraining and fine-tuning, tiny and
   base, in bf16 and in fp16 with a grad scaler; prediction on the GPU against the CPU; native-bf16
   detection; fp32 contrastive logits under autocast;
2. the bf16 benchmark of base (``python -m benchmarks --device cuda --sizes base --quick``): pretraining
   and fine-tuning steps, MFU against the chip's datasheet peak and against the best matmul measured;
3. the batched JPEG decode on the GPU (``python -m benchmarks.ingest --skip-ray --device cuda``);
4. one table of the results, and ``reports/bench/gpu_check.json``.

Without a GPU it says so and exits 2. It changes no setting of the card.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "reports" / "bench"


def _run(cmd: list[str], timeout: int) -> tuple[int, float, str]:
    t0 = time.perf_counter()
    try:
        done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False)
        rc, text = done.returncode, done.stdout + done.stderr
    except subprocess.TimeoutExpired as e:
        captured = [b.decode(errors="replace") if isinstance(b, bytes) else b or "" for b in (e.stdout, e.stderr)]
        rc, text = 124, f"timed out after {timeout} s\n" + "".join(captured)
    return rc, time.perf_counter() - t0, text


def main() -> int:
    import torch

    if not torch.cuda.is_available():
        print("no CUDA GPU on this machine: nothing to check")
        return 2
    gpu = torch.cuda.get_device_name(0)
    print(f"GPU: {gpu}, torch {torch.__version__}, CUDA {torch.version.cuda}")
    OUT.mkdir(parents=True, exist_ok=True)
    rows: list[tuple[str, str, float, str]] = []
    rc, secs, text = _run([sys.executable, "-m", "pytest", "-q", "-p", "no:randomly", "tests/gpu"], 300)
    summary = next((ln for ln in reversed(text.splitlines()) if " passed" in ln or " failed" in ln), text[-200:])
    rows.append(("gpu tests", "ok" if rc == 0 else f"rc {rc}", secs, summary.strip("= ")))
    bench_json = OUT / "gpu_check_bench.json"
    cmd = [sys.executable, "-m", "benchmarks", "--device", "cuda", "--sizes", "base", "--quick"]
    rc, secs, text = _run([*cmd, "--only", "pretrain,finetune", "--out", str(bench_json)], 420)
    figures = "no benchmark output"
    if rc == 0 and bench_json.is_file():
        sec: dict[str, Any] = json.loads(bench_json.read_text())["sections"].get("cuda/base", {})
        parts = []
        for kind in ("pretrain", "finetune"):
            for name, c in sec.get(kind, {}).get("cases", {}).items():
                if name.startswith("ours"):
                    parts.append(
                        f"{kind}: {c['clips_per_s']:.0f} clips/s, MFU {100 * c['mfu']:.1f}% datasheet / "
                        f"{100 * c['mfu_matmul']:.1f}% matmul"
                    )
        figures = "; ".join(parts) or figures
    rows.append(("bf16 base benchmark", "ok" if rc == 0 else f"rc {rc}", secs, figures))
    if rc != 0:
        print(text[-3000:])
    ingest = [sys.executable, "-m", "benchmarks.ingest", "--skip-ray", "--device", "cuda", "--clips", "64"]
    rc, secs, text = _run([*ingest, "--out", str(OUT / "gpu_check_decode.json")], 180)
    lines = [ln for ln in text.splitlines() if ln.startswith(("pretraining item", "decode, crop"))]
    rows.append(("JPEG decode on the GPU", "ok" if rc == 0 else f"rc {rc}", secs, " | ".join(lines) or text[-300:]))
    width = max(len(r[0]) for r in rows)
    print(f"\n{'check'.ljust(width)}  status  seconds  result")
    for name, status, secs, result in rows:
        print(f"{name.ljust(width)}  {status:6}  {secs:7.0f}  {result}")
    (OUT / "gpu_check.json").write_text(json.dumps({"gpu": gpu, "rows": rows}, indent=2))
    return 0 if all(r[1] == "ok" for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
