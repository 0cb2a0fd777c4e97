"""`avf report compare` over real DVC experiments: two arms on two folds, intervals, the paired difference,
the files it writes and its MLflow run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from mlflow import MlflowClient

from tests.support.cli import avf_ok, invoke, own_tracking_store

DVC = str(Path(sys.executable).with_name("dvc"))

# 60 test clips of 4 classes per fold, each right with probability toy.quality (seeded by fold and seed)
PREDICT = """
import os, numpy as np, pandas as pd, yaml
p, q = yaml.safe_load(open("params.yaml")), yaml.safe_load(open("toy.yaml"))["quality"]
rng = np.random.default_rng(100 * p["data"]["split"]["fold"] + p["seed"])
classes = np.array(["angry", "calm", "happy", "sad"])
actual = rng.choice(classes, 60)
right = rng.random(60) < q
os.makedirs("reports/eval", exist_ok=True)
predicted = np.where(right, actual, rng.choice(classes, 60))
keys = [f"ravdess__{i:02d}" for i in range(60)]
frame = pd.DataFrame({"key": keys, "actual": actual, "predicted": predicted})
frame.to_csv("reports/eval/predictions.csv", index=False)
"""


@pytest.mark.timeout(300)
def test_two_arms_on_two_folds_compared_with_intervals_and_logged(tmp_path: Path) -> None:
    env = {**os.environ, "DVC_NO_ANALYTICS": "1"}
    proj = tmp_path / "proj"
    proj.mkdir()

    def run(*cmd: str) -> None:
        subprocess.run(cmd, cwd=proj, env=env, check=True, capture_output=True, text=True)

    (proj / "predict.py").write_text(PREDICT)
    (proj / "params.yaml").write_text(yaml.safe_dump({"seed": 0, "data": {"split": {"fold": 1}}}))
    (proj / "toy.yaml").write_text("quality: 0.9\n")
    stage = {
        "cmd": f"{sys.executable} predict.py",
        "deps": ["predict.py"],
        "params": ["seed", "data.split.fold", {"toy.yaml": ["quality"]}],
        "outs": [{"reports/eval/predictions.csv": {"cache": False}}],
    }
    (proj / "dvc.yaml").write_text(yaml.safe_dump({"stages": {"predict": stage}}))
    run("git", "init", "-q", "-b", "main")
    run("git", "config", "user.email", "t@example.com")
    run("git", "config", "user.name", "t")
    run(DVC, "init", "-q")
    run(DVC, "repro", "-q")
    run("git", "add", "-A")
    run("git", "commit", "-qm", "full arm, fold 1")
    for name, fold, quality in (("full-f2", 2, 0.9), ("weak-f1", 1, 0.3), ("weak-f2", 2, 0.3)):
        # every value given: a workspace experiment leaves its -S values in the params files
        run(DVC, "exp", "run", "-q", "-n", name, "-S", f"data.split.fold={fold}", "-S", f"toy.yaml:quality={quality}")

    out = tmp_path / "compare"
    args = ["--params", str(proj / "params.yaml"), "report", "compare", "--project", str(proj), "--out", str(out)]
    arms = ["--arm", "full=main,full-f2", "--arm", "weak=weak-f1,weak-f2", "--boot", "500"]
    old_path = os.environ["PATH"]
    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{old_path}"  # dvc exp show
    try:
        with own_tracking_store(tmp_path / "store"):
            printed = avf_ok(*args, *arms)
            client = MlflowClient(os.environ["MLFLOW_TRACKING_URI"])
            (exp,) = [e for e in client.search_experiments() if e.name.endswith("/reports")]
            (logged,) = client.search_runs([exp.experiment_id])
            artifacts = {a.path for a in client.list_artifacts(logged.info.run_id, "compare")}
        bad = invoke(*args, "--arm", "full=main", "--arm", "weak=nope", "--no-mlflow")
    finally:
        os.environ["PATH"] = old_path

    assert "| weak − full, paired | 2 pairs |" in printed
    summary = json.loads((out / "compare.json").read_text())
    assert summary["arms"]["full"]["runs"] == [[1, 0], [2, 0]] and summary["experiments"]["weak"] == [
        "weak-f1",
        "weak-f2",
    ]
    full, weak, diff = (
        summary["arms"]["full"]["uar"],
        summary["arms"]["weak"]["uar"],
        summary["differences"]["weak"]["uar"],
    )
    assert full["low"] < full["value"] < full["high"] and weak["high"] < full["low"]  # 90% vs 30% right
    assert diff["value"] == pytest.approx(weak["value"] - full["value"]) and diff["high"] < 0
    assert logged.data.metrics["weak-minus-full/uar"] == pytest.approx(diff["value"])
    assert logged.data.metrics["full/uar_low"] == pytest.approx(full["low"])
    assert artifacts == {f"compare/compare.{ext}" for ext in ("md", "html", "png", "json")}
    assert bad.exit_code == 2 and "nope" in bad.output
