"""`avf report folds`: per-fold test metrics, the mean over folds and pooled metrics (against sklearn)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pandas as pd
import pytest
from sklearn.metrics import accuracy_score, recall_score

from avf.report.ablations import Experiment
from avf.report.folds import collect, pooled_classification, summarize, to_markdown, write_report

F1 = pd.DataFrame({"actual": ["happy", "happy", "sad", "sad"], "predicted": ["happy", "sad", "sad", "sad"]})
F2 = pd.DataFrame(
    {"actual": ["happy", "sad", "angry", "angry", "angry", "angry"], "predicted": ["happy"] * 3 + ["angry"] * 3}
)


def test_pooled_metrics_equal_sklearn_on_the_concatenated_predictions() -> None:
    both = pd.concat([F1, F2])
    pooled = pooled_classification([F1, F2])
    assert pooled["war"] == pytest.approx(100 * accuracy_score(both["actual"], both["predicted"]))
    assert pooled["uar"] == pytest.approx(100 * recall_score(both["actual"], both["predicted"], average="macro"))


def test_summary_mean_is_over_folds_and_pooled_over_clips() -> None:
    s = summarize({2: {"uar": 40.0, "war": 50.0}, 1: {"uar": 60.0, "war": 70.0}}, {1: F1, 2: F2})
    assert list(s["folds"]) == [1, 2]
    assert s["mean"] == {"uar": 50.0, "war": 60.0}
    assert s["clips"] == 10 and s["pooled"]["war"] == pytest.approx(70.0)
    assert "pooled" not in summarize({1: {"uar": 1.0}}, {})  # no predictions: mean only
    md = to_markdown(s)
    assert "| **mean over folds** | **50.00** | **60.00** |" in md and "pooled (10 clips)" in md


def _git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


def test_collect_reads_each_fold_from_git(tmp_path: Path) -> None:
    _git(tmp_path, "init", "-q")
    revs = []
    for frame in (F1, F2):
        (tmp_path / "reports/eval").mkdir(parents=True, exist_ok=True)
        frame.to_csv(tmp_path / "reports/eval/predictions.csv", index=False)
        _git(tmp_path, "add", "-A")
        _git(tmp_path, "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "fold")
        revs.append(_git(tmp_path, "rev-parse", "HEAD"))
    metric = "reports/eval/metrics.json:test/uar"
    exps = [
        Experiment("main", revs[0], {"data.split.fold": 1}, {metric: 75.0}),
        Experiment("fold2", revs[1], {"data.split.fold": 2}, {metric: 55.0}),
        Experiment("again1", revs[1], {"data.split.fold": 1}, {metric: 10.0}),
    ]
    (paths, s) = write_report(tmp_path, tmp_path / "out", ["main", "fold2"], exps)
    assert s["mean"]["uar"] == pytest.approx(65.0) and s["clips"] == 10
    assert s["experiments"] == {1: "main", 2: "fold2"}
    assert "fold 2 (`fold2`)" in paths["md"].read_text()
    for e in exps:
        e.metrics["reports/eval/metrics.json:last/test/uar"] = e.metrics[metric] + 1
    last = collect(tmp_path, ["main", "fold2"], exps, prefix="last/test/")
    assert last["mean"]["uar"] == pytest.approx(66.0) and "pooled" not in last  # predictions are the selected model's
    with pytest.raises(ValueError, match="both fold 1"):
        collect(tmp_path, ["main", "again1"], exps)
    with pytest.raises(ValueError, match="unknown experiment"):
        collect(tmp_path, ["nope"], exps)
