"""Arms of DVC experiments compared with intervals: each arm's test UAR / WAR with a 95% interval over its runs
(folds x seeds) and their clips, and each arm's paired difference from the baseline arm on the same folds and
seeds (:mod:`avf.report.intervals`). Per-clip predictions come from each experiment's committed
``reports/eval/predictions.csv`` (the validation-selected model).

Writes ``compare.md``, ``compare.html`` (with a bar chart with error bars), ``compare.png`` and
``compare.json``.
"""

from __future__ import annotations

import base64
import html
import io
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from avf.report.ablations import Experiment, _git_show, _png, by_name, load_experiments
from avf.report.folds import FOLD_PARAM, METRICS_FILE, PREDICTIONS_FILE
from avf.report.intervals import Interval, Run, arm_interval, paired_difference, uar
from avf.utils.io import atomic_path

SEED_PARAM = "seed"
METRIC_NAMES = {"uar": "UAR", "war": "WAR"}

EPOCHS_FILE = "reports/finetune/epochs.csv"


@dataclass
class ArmRun:
    """One experiment of an arm: its fold and seed, test predictions, and (when it wrote them) the last
    epoch's test UAR and the mean test UAR over its epochs."""

    key: tuple[int, int]
    name: str
    predictions: pd.DataFrame
    last_uar: float | None = None
    epochs_mean_uar: float | None = None


Arms = dict[str, list[ArmRun]]


def parse_arms(specs: Sequence[str]) -> dict[str, list[str]]:
    """``["full=e1,e2", "scratch=e3,e4"]`` -> ``{"full": ["e1", "e2"], ...}``; the first arm is the baseline."""
    arms: dict[str, list[str]] = {}
    for spec in specs:
        name, sep, exps = spec.partition("=")
        names = [e.strip() for e in exps.split(",") if e.strip()]
        if not sep or not name.strip() or not names:
            raise ValueError(f"--arm {spec!r}: expected NAME=EXPERIMENT[,EXPERIMENT...]")
        if name.strip() in arms:
            raise ValueError(f"arm {name.strip()!r} is given twice")
        arms[name.strip()] = names
    if len(arms) < 2:
        raise ValueError("give at least two arms to compare (--arm NAME=EXP,... twice)")
    return arms


def load_arms(
    project: Path, arms: Mapping[str, Sequence[str]], exps: list[Experiment] | None = None, all_commits: bool = False
) -> Arms:
    """Each arm's runs: its experiments' fold and seed, and their predictions read from git."""
    exps = exps if exps is not None else load_experiments(project, all_commits)
    named = by_name(exps, [n for names in arms.values() for n in names])
    out: Arms = {}
    for arm, names in arms.items():
        runs = []
        for name in names:
            e = named[name]
            key = (int(e.params.get(FOLD_PARAM, 1)), int(e.params.get(SEED_PARAM, 0)))
            if key in {r.key for r in runs}:
                raise ValueError(f"arm {arm}: two experiments are fold {key[0]}, seed {key[1]}")
            text = _git_show(project, e.rev, PREDICTIONS_FILE)
            if not text:
                raise FileNotFoundError(f"{name}: no {PREDICTIONS_FILE} in its commit {e.rev[:12]}")
            run = ArmRun(key, name, pd.read_csv(io.StringIO(text)))
            metrics = json.loads(_git_show(project, e.rev, METRICS_FILE) or "{}")
            run.last_uar = metrics.get("last/test/uar")
            epochs = _git_show(project, e.rev, EPOCHS_FILE)
            if epochs and "test/uar" in (curve := pd.read_csv(io.StringIO(epochs))):
                run.epochs_mean_uar = float(curve["test/uar"].mean())
            runs.append(run)
        out[arm] = runs
    return out


def _runs(arms: Arms) -> dict[str, dict[tuple[int, int], Run]]:
    frames = [r.predictions for runs in arms.values() for r in runs]
    needed = {"key", "actual", "predicted"}
    missing = [r.name for runs in arms.values() for r in runs if not needed <= set(r.predictions.columns)]
    if missing:
        raise ValueError(f"{missing}: predictions without key/actual/predicted columns (a regression task?)")
    labels = sorted(set().union(*(set(f["actual"]) | set(f["predicted"]) for f in frames)))
    index = {name: i for i, name in enumerate(labels)}
    return {
        arm: {
            r.key: Run(
                r.name,
                r.predictions["key"].astype(str).to_numpy(),
                r.predictions["actual"].map(index).to_numpy(np.int64),
                r.predictions["predicted"].map(index).to_numpy(np.int64),
                len(labels),
            )
            for r in runs
        }
        for arm, runs in arms.items()
    }


def summarize(arms: Arms, metrics: Sequence[str] = ("uar", "war"), n_boot: int = 2000, seed: int = 0) -> dict[str, Any]:
    """Per arm and metric an :class:`Interval`; per other arm its paired difference from the first (the baseline)."""
    runs = _runs(arms)
    baseline, *others = list(runs)
    out: dict[str, Any] = {"baseline": baseline, "n_boot": n_boot, "seed": seed, "arms": {}, "differences": {}}
    for arm, by_key in runs.items():
        cells = {m: arm_interval(list(by_key.values()), m, n_boot, seed) for m in metrics}
        out["arms"][arm] = {"runs": sorted(by_key), **cells}
    for arm in others:
        shared = sorted(set(runs[arm]) & set(runs[baseline]))
        if not shared:
            raise ValueError(f"{arm} and {baseline} share no fold and seed: nothing to pair")
        pairs = [(runs[arm][k], runs[baseline][k]) for k in shared]
        out["differences"][arm] = {"pairs": shared, **{m: paired_difference(pairs, m, n_boot, seed) for m in metrics}}
    out["per_run"] = {
        arm: {
            f"f{r.key[0]}-s{r.key[1]}": {
                "uar": uar(runs[arm][r.key].actual, runs[arm][r.key].predicted, runs[arm][r.key].num_classes),
                "last_uar": r.last_uar,
                "epochs_mean_uar": r.epochs_mean_uar,
            }
            for r in sorted(arm_runs, key=lambda r: r.key)
        }
        for arm, arm_runs in arms.items()
    }
    return out


PER_RUN_ROWS = {
    "uar": "exported model",
    "last_uar": "last epoch",
    "epochs_mean_uar": "mean over epochs",
}


def per_run_markdown(summary: dict[str, Any]) -> str:
    """Test UAR of every run (fold, seed) by arm: the exported model, the last epoch, the mean over epochs."""
    per_run = summary.get("per_run") or {}
    cols = sorted({c for runs in per_run.values() for c in runs}, key=lambda c: tuple(int(x[1:]) for x in c.split("-")))
    lines = ["| arm | test UAR of | " + " | ".join(c.replace("-", " ") for c in cols) + " |"]
    lines.append("|---|---|" + "---|" * len(cols))
    for arm, runs in per_run.items():
        for field, label in PER_RUN_ROWS.items():
            if all(runs[c].get(field) is None for c in runs):
                continue
            cells = [f"{v:.2f}" if (v := runs.get(c, {}).get(field)) is not None else "" for c in cols]
            lines.append(f"| {arm} | {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def to_markdown(summary: dict[str, Any], metrics: Sequence[str] = ("uar", "war")) -> str:
    head = "| | runs (fold, seed) | " + " | ".join(f"{METRIC_NAMES[m]} (95% CI)" for m in metrics) + " |"
    lines = [head, "|---|---|" + "---|" * len(metrics)]
    for arm, cells in summary["arms"].items():
        runs = ", ".join(f"({f}, {s})" for f, s in cells["runs"])
        lines.append(f"| {arm} | {len(cells['runs'])}: {runs} | " + " | ".join(cells[m].text() for m in metrics) + " |")
    for arm, cells in summary["differences"].items():
        label = f"{arm} − {summary['baseline']}, paired"
        lines.append(
            f"| {label} | {len(cells['pairs'])} pairs | " + " | ".join(cells[m].text(True) for m in metrics) + " |"
        )
    return "\n".join(lines)


def _chart(summary: dict[str, Any], metrics: Sequence[str]) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    arms = list(summary["arms"])
    fig, ax = plt.subplots(figsize=(1.8 + 1.4 * len(arms) * len(metrics), 3.2))
    width = 0.8 / len(metrics)
    for j, m in enumerate(metrics):
        cells: list[Interval] = [summary["arms"][a][m] for a in arms]
        x = np.arange(len(arms)) + (j - (len(metrics) - 1) / 2) * width
        err = [[c.value - c.low for c in cells], [c.high - c.value for c in cells]]
        ax.bar(x, [c.value for c in cells], width, yerr=err, capsize=4, label=METRIC_NAMES[m])
    ax.set_xticks(np.arange(len(arms)), arms)
    ax.set_ylabel("test, % (95% CI)")
    ax.legend(frameon=False)
    return base64.b64decode(_png(fig))


def _jsonable(summary: dict[str, Any]) -> dict[str, Any]:
    def cell(v: Any) -> Any:
        return {"value": v.value, "low": v.low, "high": v.high, "runs": v.runs} if isinstance(v, Interval) else v

    return {
        **summary,
        "arms": {a: {k: cell(v) for k, v in c.items()} for a, c in summary["arms"].items()},
        "differences": {a: {k: cell(v) for k, v in c.items()} for a, c in summary["differences"].items()},
    }


def from_json(payload: dict[str, Any]) -> dict[str, Any]:
    """A summary read back from ``compare.json`` (the inverse of what :func:`write_report` writes)."""

    def cell(v: Any) -> Any:
        return Interval(v["value"], v["low"], v["high"], v["runs"]) if isinstance(v, dict) and "low" in v else v

    return {
        **payload,
        "arms": {a: {k: cell(v) for k, v in c.items()} for a, c in payload["arms"].items()},
        "differences": {a: {k: cell(v) for k, v in c.items()} for a, c in payload["differences"].items()},
    }


def write_report(
    out: Path, summary: dict[str, Any], arms: Mapping[str, Sequence[str]], metrics: Sequence[str] = ("uar", "war")
) -> dict[str, Path]:
    """``compare.{md,html,png,json}`` under ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    paths = {ext: out / f"compare.{ext}" for ext in ("md", "html", "png", "json")}
    table = to_markdown(summary, metrics)
    members = "\n".join(f"- **{a}**: {', '.join(f'`{n}`' for n in names)}" for a, names in arms.items())
    note = (
        f"Test metrics of the validation-selected model, %. Intervals: percentile bootstrap "
        f"({summary['n_boot']} replicates) over runs and, within each run, over its test clips; differences are "
        f"paired on fold and seed, with the same clips drawn for both arms."
    )
    png = _chart(summary, metrics)
    with atomic_path(paths["png"]) as tmp:
        tmp.write_bytes(png)
    with atomic_path(paths["md"]) as tmp:
        tmp.write_text(
            f"# Arms compared with 95% intervals\n\n{members}\n\n{table}\n\n{note}\n\n"
            f"## Every run\n\n{per_run_markdown(summary)}\n"
        )
    with atomic_path(paths["json"]) as tmp:
        tmp.write_text(json.dumps({"experiments": dict(arms), **_jsonable(summary)}, indent=2))
    rows = "".join(
        "<tr>" + "".join(f"<td>{html.escape(c.strip())}</td>" for c in line.strip("|").split("|")) + "</tr>"
        for line in table.splitlines()[2:]
    )
    header = "".join(f"<th>{html.escape(c.strip())}</th>" for c in table.splitlines()[0].strip("|").split("|"))
    image = base64.b64encode(png).decode()
    with atomic_path(paths["html"]) as tmp:
        tmp.write_text(
            "<!doctype html><meta charset='utf-8'><title>avf: arms compared</title>"
            f"<h1>Arms compared with 95% intervals</h1><table border=1 cellpadding=4><tr>{header}</tr>{rows}</table>"
            f"<p>{html.escape(note)}</p><img src='data:image/png;base64,{image}' alt='bar chart with 95% intervals'>"
        )
    return paths
