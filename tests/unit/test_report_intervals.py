"""Bootstrap intervals of test metrics and paired comparisons of two arms (avf.report.intervals, .compare)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from avf.eval.metrics import classification_metrics
from avf.report.compare import ArmRun, parse_arms, per_run_markdown, summarize, to_markdown, write_report
from avf.report.intervals import Run, arm_interval, paired_difference, uar, war


def _run(name: str, actual: list[int] | np.ndarray, predicted: list[int] | np.ndarray, k: int = 3) -> Run:
    a = np.asarray(actual)
    return Run(name, np.array([f"c{i}" for i in range(len(a))]), a, np.asarray(predicted), k)


def _simulated(name: str, rng: np.random.Generator, clips: int, p_correct: float, k: int = 4) -> Run:
    actual = rng.integers(k, size=clips)
    wrong = (actual + rng.integers(1, k, size=clips)) % k
    return _run(name, actual, np.where(rng.random(clips) < p_correct, actual, wrong), k)


def test_uar_averages_recall_over_the_classes_present_and_war_is_accuracy() -> None:
    actual, predicted = np.array([0, 0, 0, 0, 1, 1]), np.array([0, 0, 0, 0, 0, 1])
    assert uar(actual, predicted, 3) == pytest.approx(75.0)  # (4/4 + 1/2) / 2; class 2 absent
    assert war(actual, predicted, 3) == pytest.approx(5 / 6 * 100)
    rng = np.random.default_rng(2)
    for _ in range(20):  # the same numbers as the evaluation stage's (scikit-learn) metrics
        actual, predicted = rng.integers(8, size=32), rng.integers(8, size=32)
        expected = classification_metrics(actual, predicted, 8)
        assert uar(actual, predicted, 8) == pytest.approx(expected["uar"])
        assert war(actual, predicted, 8) == pytest.approx(expected["war"])


def test_an_arm_interval_holds_its_mean_is_seeded_and_narrows_with_more_clips() -> None:
    rng = np.random.default_rng(1)
    runs = [_simulated(f"fold{i}", rng, 32, 0.6) for i in range(3)]
    one = arm_interval(runs, "uar", n_boot=400, seed=7)
    assert one == arm_interval(runs, "uar", n_boot=400, seed=7)
    assert one.low < one.value < one.high and one.runs == 3
    assert one.value == pytest.approx(np.mean([uar(r.actual, r.predicted, 4) for r in runs]))
    big = [_simulated(f"fold{i}", rng, 800, 0.6) for i in range(3)]
    wide, narrow = one.high - one.low, (lambda i: i.high - i.low)(arm_interval(big, "uar", n_boot=400))
    assert narrow < wide / 3


def test_the_interval_covers_the_true_accuracy_about_95_times_in_100() -> None:
    rng = np.random.default_rng(0)
    covered = 0
    for trial in range(60):
        cell = arm_interval([_simulated("r", rng, 120, 0.7)], "war", n_boot=300, seed=trial)
        covered += cell.low <= 70.0 <= cell.high
    assert covered >= 51  # 95% nominal; the percentile bootstrap runs a little short at n = 120


def test_a_paired_difference_is_narrower_than_the_two_separate_intervals() -> None:
    rng = np.random.default_rng(3)
    a = [_simulated(f"f{i}", rng, 64, 0.55) for i in range(3)]
    b = []
    for r in a:  # the same model but for a few clips: most clip-level noise is shared
        predicted = r.predicted.copy()
        flip = rng.choice(len(predicted), size=6, replace=False)
        predicted[flip] = r.actual[flip]
        shuffled = rng.permutation(len(predicted))  # another clip order: pairing goes by key
        b.append(Run(r.name + "b", r.keys[shuffled], r.actual[shuffled], predicted[shuffled], r.num_classes))
    diff = paired_difference(list(zip(b, a, strict=True)), "war", n_boot=400)
    sep_a, sep_b = arm_interval(a, "war", n_boot=400), arm_interval(b, "war", n_boot=400)
    assert diff.value == pytest.approx(sep_b.value - sep_a.value)
    assert diff.value > 0 and diff.low > 0  # every flip fixed a wrong clip
    assert diff.high - diff.low < 0.5 * ((sep_a.high - sep_a.low) + (sep_b.high - sep_b.low)) / 2
    other = _run("other", [0, 1], [0, 1])
    with pytest.raises(ValueError, match="not tested on the same clips"):
        paired_difference([(a[0], other)])


def _frame(rng: np.random.Generator, p: float, classes: list[str], clips: int = 40) -> pd.DataFrame:
    actual = rng.choice(classes, size=clips)
    predicted = np.where(rng.random(clips) < p, actual, rng.choice(classes, size=clips))
    return pd.DataFrame({"key": [f"ravdess__{i:03d}" for i in range(clips)], "actual": actual, "predicted": predicted})


def uar_of(frame: pd.DataFrame) -> float:
    from sklearn.metrics import balanced_accuracy_score  # the mean recall over the classes present

    return 100.0 * float(balanced_accuracy_score(frame["actual"], frame["predicted"]))


def test_arms_over_folds_are_summarised_paired_and_written(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    classes = ["angry", "calm", "happy", "sad"]
    full = {(f, 0): _frame(rng, 0.8, classes) for f in (1, 2, 3)}
    scratch = {k: f.assign(predicted=np.where(rng.random(len(f)) < 0.5, f["actual"], "sad")) for k, f in full.items()}
    arms = {
        "full": [ArmRun(k, f"full-f{k[0]}", f, last_uar=70.0 + k[0]) for k, f in full.items()],
        "scratch": [ArmRun(k, f"scratch-f{k[0]}", f) for k, f in scratch.items()],
    }
    summary = summarize(arms, n_boot=300)
    assert summary["baseline"] == "full" and summary["arms"]["full"]["runs"] == [(1, 0), (2, 0), (3, 0)]
    diff = summary["differences"]["scratch"]
    assert diff["pairs"] == [(1, 0), (2, 0), (3, 0)] and diff["uar"].high < 0  # scratch is worse, clearly
    table = to_markdown(summary)
    assert "| full | 3: (1, 0), (2, 0), (3, 0) |" in table and "| scratch − full, paired | 3 pairs |" in table
    paths = write_report(tmp_path, summary, {"full": ["full-f1"], "scratch": ["scratch-f1"]})
    assert json.loads(paths["json"].read_text())["differences"]["scratch"]["uar"]["high"] < 0
    assert "<img src='data:image/png;base64," in paths["html"].read_text()
    assert paths["png"].read_bytes().startswith(b"\x89PNG")

    per_run = per_run_markdown(summary)  # each run's own UAR, and the last epoch's where the run wrote it
    assert per_run.splitlines()[0] == "| arm | test UAR of | f1 s0 | f2 s0 | f3 s0 |"
    assert "| full | last epoch | 71.00 | 72.00 | 73.00 |" in per_run and "| scratch | last epoch |" not in per_run
    assert summary["per_run"]["full"]["f2-s0"]["uar"] == pytest.approx(uar_of(full[(2, 0)]))

    arms["scratch"] = [ArmRun((9, 9), "x", scratch[(1, 0)])]
    with pytest.raises(ValueError, match="share no fold and seed"):
        summarize(arms, n_boot=100)


def test_arm_specs_are_checked() -> None:
    assert parse_arms(["full=a, b", "scratch=c"]) == {"full": ["a", "b"], "scratch": ["c"]}
    for bad in (["full=a"], ["full", "x=y"], ["full=a", "full=b"], ["=a", "x=b"]):
        with pytest.raises(ValueError):
            parse_arms(bad)
