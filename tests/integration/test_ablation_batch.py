"""An ablation batch end to end with DVC's own queue: `avf exp queue` queues arms x folds x seeds from a batch
file with the project's real params.yaml, `dvc queue start -j 2` runs them, re-queueing keeps the finished
ones, and `avf report compare --batch` pairs the arms by fold and seed."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.support.cli import avf_ok, invoke

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

ROOT = Path(__file__).resolve().parents[2]
DVC = str(Path(sys.executable).with_name("dvc"))

# 40 test clips of 4 classes per fold; right with probability 0.9, or 0.3 when trained from scratch
PREDICT = """
import os, numpy as np, pandas as pd, yaml
p = yaml.safe_load(open("params.yaml"))
q = 0.3 if p["finetune"]["init_from"] == "scratch" else 0.9
rng = np.random.default_rng(100 * p["data"]["split"]["fold"] + p["seed"])
classes = np.array(["angry", "calm", "happy", "sad"])
actual = rng.choice(classes, 40)
predicted = np.where(rng.random(40) < q, actual, rng.choice(classes, 40))
os.makedirs("reports/eval", exist_ok=True)
pd.DataFrame({"key": [f"ravdess__{i:02d}" for i in range(40)], "actual": actual, "predicted": predicted}).to_csv(
    "reports/eval/predictions.csv", index=False
)
"""

BATCH = {
    "target": "predict",
    "folds": [1, 2],
    "arms": {"full": {"seeds": [0, 1]}, "scratch": {"set": ["finetune.init_from=scratch"]}},
}


def _queue_idle(proj: Path, env: dict[str, str]) -> str:
    deadline = time.monotonic() + 420
    while True:
        status = subprocess.run([DVC, "queue", "status"], cwd=proj, env=env, capture_output=True, text=True).stdout
        if "Queued" not in status and "Running" not in status:
            return status
        assert time.monotonic() < deadline, status
        time.sleep(1)


def test_a_batch_is_queued_run_by_dvc_and_compared_by_arm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "DVC_EXP"))}
    env.update(PATH=f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}", DVC_NO_ANALYTICS="1")
    monkeypatch.setenv("PATH", env["PATH"])  # the CLI calls dvc
    proj = tmp_path / "proj"
    proj.mkdir()

    def run(*cmd: str) -> str:
        return subprocess.run(cmd, cwd=proj, env=env, check=True, capture_output=True, text=True).stdout

    shutil.copy(ROOT / "params.yaml", proj / "params.yaml")
    (proj / "predict.py").write_text(PREDICT)
    stage = {
        "cmd": f"{sys.executable} predict.py",
        "deps": ["predict.py"],
        "params": ["seed", "data.split.fold", "finetune.init_from", "ablation.name"],
        "outs": [{"reports/eval/predictions.csv": {"cache": False}}],
    }
    (proj / "dvc.yaml").write_text(yaml.safe_dump({"stages": {"predict": stage}}))
    batch = proj / "batch.yaml"
    batch.write_text(yaml.safe_dump(BATCH))
    run("git", "init", "-q", "-b", "main")
    run("git", "config", "user.email", "t@example.com")
    run("git", "config", "user.name", "t")
    run(DVC, "init", "-q")
    run("git", "add", "-A")
    run("git", "commit", "-qm", "toy project with the real params.yaml")

    bad = proj / "bad.yaml"
    bad.write_text(yaml.safe_dump({**BATCH, "arms": {**BATCH["arms"], "typo": {"set": ["finetune.int_from=x"]}}}))
    refused = invoke("exp", "queue", str(bad), "--project", str(proj))
    assert refused.exit_code == 2 and "typo-f1-s0" in refused.output and "finetune.int_from" in refused.output
    assert "Queued" not in run(DVC, "queue", "status")  # nothing was queued

    printed = avf_ok("exp", "queue", str(batch), "--project", str(proj))
    assert "6 experiments queued" in printed
    run(DVC, "queue", "start", "-j", "2")
    try:
        status = _queue_idle(proj, env)
    finally:
        run(DVC, "queue", "stop", "--kill")
    assert status.count("Success") == 6, status
    again = avf_ok("exp", "queue", str(batch), "--project", str(proj))
    assert "0 experiments queued" in again and again.count("present") == 6

    out = tmp_path / "compare"
    avf_ok("--params", str(proj / "params.yaml"), "report", "compare", "--project", str(proj),
           "--batch", str(batch), "--out", str(out), "--boot", "300", "--no-mlflow")  # fmt: skip
    summary = json.loads((out / "compare.json").read_text())
    assert summary["experiments"] == {
        "full": ["full-f1-s0", "full-f1-s1", "full-f2-s0", "full-f2-s1"],
        "scratch": ["scratch-f1-s0", "scratch-f2-s0"],
    }
    assert summary["arms"]["full"]["runs"] == [[1, 0], [1, 1], [2, 0], [2, 1]]
    assert summary["differences"]["scratch"]["pairs"] == [[1, 0], [2, 0]]  # paired on the shared fold and seed
    assert summary["differences"]["scratch"]["uar"]["high"] < 0  # 30% right against 90%
