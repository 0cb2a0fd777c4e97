"""Cross-validation summary of DVC experiments: per fold, the mean over folds and the pooled metrics.

Each experiment (or commit) is one fold of ``data.split.fold``. Per fold, the test metrics come from
its committed ``reports/eval/metrics.json``. The **mean over folds** is what the papers report. The
**pooled** metrics are computed once over the concatenated per-clip predictions of all folds
(``reports/eval/predictions.csv``, read from git), so every clip weighs the same.
"""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from avf.eval.metrics import classification_metrics, mean_over_folds
from avf.report.ablations import Experiment, _git_show, by_name, load_experiments
from avf.utils.io import atomic_path

FOLD_PARAM = "data.split.fold"
METRICS_FILE = "reports/eval/metrics.json"
PREDICTIONS_FILE = "reports/eval/predictions.csv"


def pooled_classification(predictions: Sequence[pd.DataFrame]) -> dict[str, float]:
    """Metrics over the concatenated ``actual`` / ``predicted`` class names of every fold."""
    both = pd.concat(list(predictions), ignore_index=True)
    names = sorted(set(both["actual"]) | set(both["predicted"]))
    index = {n: i for i, n in enumerate(names)}
    y_true = both["actual"].map(index).to_numpy(np.int64)
    y_pred = both["predicted"].map(index).to_numpy(np.int64)
    return classification_metrics(y_true, y_pred, len(names))


def summarize(folds: dict[int, dict[str, float]], predictions: dict[int, pd.DataFrame]) -> dict[str, Any]:
    """``{"folds": {k: metrics}, "mean": ..., "pooled": ..., "clips": n}`` (pooled when every fold has predictions)."""
    if not folds:
        raise ValueError("no folds to summarize")
    out: dict[str, Any] = {"folds": {int(k): v for k, v in sorted(folds.items())}}
    out["mean"] = mean_over_folds(list(folds.values()))
    if predictions and set(predictions) == set(folds) and all("actual" in p for p in predictions.values()):
        out["pooled"] = pooled_classification([predictions[k] for k in sorted(predictions)])
        out["clips"] = int(sum(len(p) for p in predictions.values()))
    return out


def collect(
    project: Path,
    names: Sequence[str],
    exps: list[Experiment] | None = None,
    prefix: str = "test/",
    all_commits: bool = False,
) -> dict[str, Any]:
    """Read the named experiments' folds, test metrics and predictions from git (via ``dvc exp show``).

    ``prefix`` picks the metrics of ``reports/eval/metrics.json``: ``test/`` (the validation-selected
    model, the default; pooled from its predictions) or e.g. ``last/test/`` (the last epoch; no pooling,
    its per-clip predictions are not kept)."""
    exps = exps if exps is not None else load_experiments(project, all_commits)
    named = by_name(exps, names)
    folds: dict[int, dict[str, float]] = {}
    predictions: dict[int, pd.DataFrame] = {}
    source: dict[int, str] = {}
    full = f"{METRICS_FILE}:{prefix}"
    for name in names:
        e = named[name]
        if e.params.get(FOLD_PARAM) is None:
            raise ValueError(f"{name}: no {FOLD_PARAM} in its params")
        fold = int(e.params[FOLD_PARAM])
        if fold in folds:
            raise ValueError(f"{name} and {source[fold]} are both fold {fold}: give one experiment per fold")
        metrics = {k.removeprefix(full): v for k, v in e.metrics.items() if k.startswith(full)}
        if not metrics:
            raise ValueError(f"{name}: no {prefix}* metrics in {METRICS_FILE}")
        folds[fold], source[fold] = metrics, name
        text = _git_show(project, e.rev, PREDICTIONS_FILE) if e.rev and prefix == "test/" else None
        if text:
            predictions[fold] = pd.read_csv(io.StringIO(text))
    summary = summarize(folds, predictions)
    summary["experiments"] = source
    return summary


def to_markdown(summary: dict[str, Any]) -> str:
    keys = sorted({k for m in summary["folds"].values() for k in m})
    lines = ["| | " + " | ".join(keys) + " |", "|---|" + "---|" * len(keys)]
    exps = summary.get("experiments", {})
    for fold, m in summary["folds"].items():
        label = f"fold {fold}" + (f" (`{exps[fold]}`)" if fold in exps else "")
        lines.append(f"| {label} | " + " | ".join(f"{m.get(k, float('nan')):.2f}" for k in keys) + " |")
    lines.append("| **mean over folds** | " + " | ".join(f"**{summary['mean'][k]:.2f}**" for k in keys) + " |")
    if "pooled" in summary:
        pooled = summary["pooled"]
        cells = [f"{pooled[k]:.2f}" if k in pooled else "" for k in keys]
        lines.append(f"| pooled ({summary['clips']} clips) | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_report(
    project: Path,
    out: Path,
    names: Sequence[str],
    exps: list[Experiment] | None = None,
    prefix: str = "test/",
    all_commits: bool = False,
) -> tuple[dict[str, Path], dict[str, Any]]:
    """Write ``folds.md`` and ``folds.json`` under ``out``; returns the paths and the summary."""
    summary = collect(project, names, exps, prefix, all_commits)
    summary["metrics"] = prefix
    out.mkdir(parents=True, exist_ok=True)
    paths = {"md": out / "folds.md", "json": out / "folds.json"}
    with atomic_path(paths["md"]) as tmp:
        tmp.write_text(f"# Cross-validation: `{prefix}*` metrics per fold\n\n" + to_markdown(summary) + "\n")
    with atomic_path(paths["json"]) as tmp:
        tmp.write_text(json.dumps(summary, indent=2, default=float))
    return paths, summary
