"""``avf report ablations``: compare DVC experiments side by side (Markdown + HTML with plots).

The experiments come from ``dvc exp show --json`` (params and metrics of every experiment and of the
baseline commit); training curves come from the cache-free plot files each experiment committed
(``git show <rev>:reports/finetune/epochs.csv``). MLflow runs of the same experiments carry the tags
``dvc.exp_name`` and ``avf.ablation``, and their ids are listed so the MLflow compare view shows the
same runs.
"""

from __future__ import annotations

import base64
import html
import io
import json
import shutil
import subprocess
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from avf.utils.io import atomic_path

CURVE_FILES = {
    "finetune": "reports/finetune/epochs.csv",
    "pretrain": "reports/pretrain/curve.csv",
}
RUN_FILES = ("pretrain", "intermediate", "finetune")
# Metrics shown first (the target's honest numbers), in this order, when present.
HEADLINE = (
    "reports/eval/metrics.json:test/uar",
    "reports/eval/metrics.json:test/war",
    "reports/eval/metrics.json:test/macro_f1",
    "reports/eval/metrics.json:test/ccc",
)


@dataclass
class Experiment:
    name: str
    rev: str
    params: dict[str, Any]
    metrics: dict[str, float]
    curves: dict[str, pd.DataFrame] = field(default_factory=dict)
    mlflow: dict[str, str] = field(default_factory=dict)


def _flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    if isinstance(obj, Mapping):
        for k, v in obj.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
    else:
        out[prefix] = obj
    return out


def _entry(raw: Mapping[str, Any], name: str | None = None) -> Experiment | None:
    data = raw.get("data") or {}
    if raw.get("error") or not data:
        return None
    params: dict[str, Any] = {}
    for values in (data.get("params") or {}).values():
        params.update(_flatten(values.get("data") or {}))
    metrics: dict[str, float] = {}
    for file, values in (data.get("metrics") or {}).items():
        for k, v in _flatten(values.get("data") or {}).items():
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                metrics[f"{file}:{k}"] = float(v)
    rev = str(raw.get("rev") or data.get("rev") or "")
    return Experiment(name=name or raw.get("name") or rev[:7], rev=rev, params=params, metrics=metrics)


def parse_exp_show(payload: Sequence[Mapping[str, Any]]) -> list[Experiment]:
    """All commits and experiments of ``dvc exp show --json`` (the workspace entry is skipped)."""
    found: list[Experiment] = []
    for commit in payload:
        if commit.get("rev") == "workspace":
            continue
        base = _entry(commit)
        if base is not None:
            found.append(base)
        for exp in commit.get("experiments") or []:
            for rev in exp.get("revs") or []:
                e = _entry(rev, exp.get("name") or rev.get("name"))
                if e is not None:
                    found.append(e)
    return found


def dvc_executable() -> str:
    """The ``dvc`` of this environment (beside the running Python), else the one on ``PATH``."""
    beside = Path(sys.executable).with_name("dvc")
    found = str(beside) if beside.is_file() else shutil.which("dvc")
    if found is None:
        raise FileNotFoundError("dvc is not installed in this environment (pip install dvc)")
    return found


def load_experiments(project: Path, all_commits: bool = False) -> list[Experiment]:
    """Commits and experiments of ``dvc exp show``: those of ``HEAD`` only, or of every commit."""
    cmd = [dvc_executable(), "exp", "show", "--json", *(["--all-commits"] if all_commits else [])]
    out = subprocess.run(cmd, cwd=project, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"dvc exp show failed in {project}: {out.stderr.strip() or out.stdout.strip()}")
    return parse_exp_show(json.loads(out.stdout or "[]"))


def _git_show(project: Path, rev: str, path: str) -> str | None:
    out = subprocess.run(["git", "show", f"{rev}:{path}"], cwd=project, capture_output=True, text=True)
    return out.stdout if out.returncode == 0 else None


def attach_files(project: Path, exps: Iterable[Experiment]) -> None:
    """Read each experiment's committed curves and MLflow run files from git."""
    for e in exps:
        for stage, path in CURVE_FILES.items():
            text = _git_show(project, e.rev, path)
            if text:
                e.curves[stage] = pd.read_csv(io.StringIO(text))
        for stage in RUN_FILES:
            text = _git_show(project, e.rev, f"reports/{stage}/mlflow_run.json")
            if text:
                run = json.loads(text)
                if run.get("run_id"):
                    e.mlflow[stage] = run["run_id"]


def by_name(exps: Sequence[Experiment], wanted: Sequence[str]) -> dict[str, Experiment]:
    """Experiments by name (the first listed wins: the newest commit's); unknown names are an error."""
    found: dict[str, Experiment] = {}
    for e in exps:
        found.setdefault(e.name, e)
    unknown = [n for n in wanted if n not in found]
    if unknown:
        raise ValueError(
            f"unknown experiment(s) {unknown}; known: {sorted(found)} "
            "(experiments based on other commits need --all-commits)"
        )
    return found


def select(exps: list[Experiment], names: Sequence[str], baseline: str | None) -> tuple[Experiment, list[Experiment]]:
    named = by_name(exps, [*names, *([baseline] if baseline else [])])
    chosen = [named[n] for n in names] if names else [e for e in exps if e.name != (baseline or exps[0].name)]
    base = named[baseline] if baseline else exps[0]
    chosen = [e for e in chosen if e.name != base.name]
    if not chosen:
        raise ValueError("nothing to compare: give at least one experiment besides the baseline")
    return base, chosen


def differing_params(exps: Sequence[Experiment]) -> pd.DataFrame:
    keys = sorted({k for e in exps for k in e.params})
    rows = {k: [e.params.get(k) for e in exps] for k in keys}
    diff = {k: v for k, v in rows.items() if len({json.dumps(x, sort_keys=True, default=str) for x in v}) > 1}
    return pd.DataFrame(diff, index=[e.name for e in exps]).T


def metric_table(base: Experiment, exps: Sequence[Experiment], changed_only: bool = True) -> pd.DataFrame:
    """Headline metrics first, then the others; with ``changed_only`` the non-headline metrics that are the
    same in every experiment (data-stage counts, usually) are left out (``df.attrs["omitted"]`` counts them)."""
    keys = [k for k in HEADLINE if k in base.metrics or any(k in e.metrics for e in exps)]
    others = sorted({k for e in [base, *exps] for k in e.metrics} - set(keys))
    if changed_only:
        kept = [k for k in others if len({json.dumps(e.metrics.get(k)) for e in [base, *exps]}) > 1]
        omitted, others = len(others) - len(kept), kept
    else:
        omitted = 0
    keys += others
    rows = []
    for k in keys:
        row: dict[str, Any] = {"metric": k, base.name: base.metrics.get(k)}
        for e in exps:
            v = e.metrics.get(k)
            row[e.name] = v
            b = base.metrics.get(k)
            row[f"Δ {e.name}"] = None if v is None or b is None else v - b
        rows.append(row)
    df = pd.DataFrame(rows)
    df.attrs["omitted"] = omitted
    return df


def _png(fig: Any) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def _figures(base: Experiment, exps: Sequence[Experiment], metrics: pd.DataFrame) -> dict[str, str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figs: dict[str, str] = {}
    everyone = [base, *exps]
    head = [k for k in HEADLINE if k in set(metrics["metric"])]
    if head:
        fig, ax = plt.subplots(figsize=(1.5 + 1.2 * len(everyone) * len(head) / 2, 3.2))
        width = 0.8 / len(everyone)
        for i, e in enumerate(everyone):
            vals = [e.metrics.get(k, float("nan")) for k in head]
            ax.bar([j + i * width for j in range(len(head))], vals, width, label=e.name)
        ax.set_xticks([j + 0.4 - width / 2 for j in range(len(head))], [k.split(":")[1] for k in head])
        ax.legend(fontsize=7)
        ax.grid(axis="y", alpha=0.3)
        figs["Test metrics"] = _png(fig)
    for stage, (x, ys) in {
        "finetune": ("epoch", ("val/uar", "train/loss")),
        "pretrain": ("step", ("train/loss",)),
    }.items():
        for y in ys:
            lines = [(e.name, e.curves[stage]) for e in everyone if stage in e.curves and y in e.curves[stage]]
            if not lines:
                continue
            fig, ax = plt.subplots(figsize=(5.5, 3.0))
            for name, df in lines:
                ax.plot(df[x], df[y], label=name, marker="o" if len(df) < 30 else None, ms=3)
            ax.set_xlabel(x)
            ax.set_ylabel(y)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
            figs[f"{stage}: {y}"] = _png(fig)
    return figs


def _md_table(df: pd.DataFrame, index: bool = True) -> str:
    def cell(v: Any) -> str:
        if v is None or (isinstance(v, float) and pd.isna(v)):
            return ""
        return f"{v:.4g}" if isinstance(v, float) else str(v)

    cols = ([df.index.name or ""] if index else []) + [str(c) for c in df.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for idx, row in df.iterrows():
        cells = ([str(idx)] if index else []) + [cell(v) for v in row.tolist()]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_report(
    project: Path,
    out: Path,
    names: Sequence[str] = (),
    baseline: str | None = None,
    experiments: list[Experiment] | None = None,
    all_commits: bool = False,
) -> dict[str, Path]:
    """Write ``ablations.md`` and ``ablations.html`` (plots embedded) under ``out``; returns the paths.

    ``all_commits``: also find experiments based on other commits than ``HEAD``."""
    exps = experiments if experiments is not None else load_experiments(project, all_commits)
    if not exps:
        raise ValueError(f"{project}: no DVC experiments or commits with params found")
    base, chosen = select(exps, names, baseline)
    if experiments is None:
        attach_files(project, [base, *chosen])
    params = differing_params([base, *chosen])
    metrics = metric_table(base, chosen)
    figs = _figures(base, chosen, metrics)
    runs = (
        pd.DataFrame({e.name: e.mlflow for e in [base, *chosen]}).T if any(e.mlflow for e in [base, *chosen]) else None
    )
    md = [
        f"# Ablations against `{base.name}`",
        "",
        "## Parameters that differ",
        "",
        _md_table(params) if not params.empty else "(none)",
        "",
        "## Metrics (Δ = experiment − baseline)",
        "",
        _md_table(metrics.set_index("metric")),
        "",
    ]
    if metrics.attrs.get("omitted"):
        md += [f"({metrics.attrs['omitted']} other metrics are equal in every experiment and not shown.)", ""]
    if runs is not None:
        md += ["## MLflow runs (tags `dvc.exp_name`, `avf.ablation`)", "", _md_table(runs), ""]
    md += [f"![{t}](data:image/png;base64,{b})" for t, b in figs.items()]
    body = [
        f"<h1>Ablations against <code>{html.escape(base.name)}</code></h1>",
        "<h2>Parameters that differ</h2>",
        params.to_html(na_rep="") if not params.empty else "<p>(none)</p>",
        "<h2>Metrics (Δ = experiment − baseline)</h2>",
        metrics.to_html(index=False, na_rep="", float_format=lambda v: f"{v:.4g}"),
    ]
    if runs is not None:
        body += ["<h2>MLflow runs</h2>", runs.to_html(na_rep="")]
    for title, b64 in figs.items():
        body.append(f"<h3>{html.escape(title)}</h3><img src='data:image/png;base64,{b64}'/>")
    page = (
        "<!doctype html><html><head><meta charset='utf-8'><title>avf ablations</title><style>"
        "body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}td,th{border:1px solid #ccc;"
        "padding:2px 6px;text-align:right}</style></head><body>" + "\n".join(body) + "</body></html>"
    )
    out.mkdir(parents=True, exist_ok=True)
    paths = {"md": out / "ablations.md", "html": out / "ablations.html"}
    with atomic_path(paths["md"]) as tmp:
        tmp.write_text("\n".join(md) + "\n")
    with atomic_path(paths["html"]) as tmp:
        tmp.write_text(page)
    return paths
