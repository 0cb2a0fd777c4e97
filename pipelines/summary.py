"""Turn DVC's JSON and the stages' ``mlflow_run.json`` files into the flows' Markdown summaries.

Pure functions over parsed JSON and files: no subprocesses and no Prefect, so they are unit-tested
directly. Metrics are ``{path: {dotted.key: value}}`` as DVC reports them (numbers only).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from avf.utils.nested import flatten, flatten_numbers

Metrics = dict[str, dict[str, float]]


@dataclass(frozen=True)
class RunLink:
    """One stage's MLflow run, as recorded in ``reports/<stage>/mlflow_run.json``."""

    stage: str
    run_id: str | None = None
    experiment_id: str | None = None
    tracking_uri: str | None = None
    skipped: bool = False

    @property
    def url(self) -> str | None:
        """The MLflow UI page of the run, when the tracking URI is a server (http/https)."""
        uri = self.tracking_uri or ""
        if not (self.run_id and self.experiment_id and uri.startswith(("http://", "https://"))):
            return None
        return f"{uri.rstrip('/')}/#/experiments/{self.experiment_id}/runs/{self.run_id}"


def _file_sections(files: Mapping[str, Any] | None, numbers: bool) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for path, entry in (files or {}).items():
        data = entry.get("data") if isinstance(entry, Mapping) else None
        flat = flatten_numbers(data) if numbers else flatten(data)
        if flat:
            out[path] = flat
    return out


def metrics_from_dvc_show(payload: Mapping[str, Any]) -> Metrics:
    """``dvc metrics show --json`` (``{rev: {"data": {path: {"data": {...}}}}}``) -> workspace metrics."""
    out: Metrics = {}
    for rev_entry in payload.values():
        if isinstance(rev_entry, Mapping):
            for path, values in _file_sections(rev_entry.get("data"), numbers=True).items():
                out.setdefault(path, {}).update(values)
    return out


@dataclass(frozen=True)
class ExpRecord:
    """One DVC experiment from ``dvc exp show --json``."""

    name: str
    rev: str
    baseline: str | None
    metrics: Metrics
    params: dict[str, dict[str, Any]]
    error: str | None = None


def experiments_from_dvc_show(payload: Sequence[Mapping[str, Any]]) -> dict[str, ExpRecord]:
    """``dvc exp show --json`` -> ``{exp_name: ExpRecord}`` (experiments under every baseline commit)."""
    out: dict[str, ExpRecord] = {}
    for commit in payload:
        for exp in commit.get("experiments") or []:
            revs = exp.get("revs") or []
            if not revs:
                continue
            head = revs[0]
            data = head.get("data") or {}
            name = exp.get("name") or head.get("name") or head.get("rev", "")[:7]
            error = head.get("error")
            out[name] = ExpRecord(
                name=name,
                rev=str(head.get("rev", "")),
                baseline=commit.get("name") or commit.get("rev"),
                metrics=_file_sections(data.get("metrics"), numbers=True),
                params=_file_sections(data.get("params"), numbers=False),
                error=(error.get("msg") if isinstance(error, Mapping) else str(error)) if error else None,
            )
    return out


def read_run_links(project_dir: Path) -> list[RunLink]:
    """Every ``reports/**/mlflow_run.json`` under ``project_dir`` (``{"skipped": true}`` kept as skipped)."""
    reports = project_dir / "reports"
    links: list[RunLink] = []
    for path in sorted(reports.rglob("mlflow_run.json")) if reports.is_dir() else []:
        stage = path.parent.relative_to(reports).as_posix()
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if not isinstance(data, Mapping):
            continue
        if data.get("skipped"):
            links.append(RunLink(stage, skipped=True))
        elif data.get("run_id"):
            links.append(
                RunLink(
                    stage,
                    run_id=str(data["run_id"]),
                    experiment_id=str(data.get("experiment_id")) if data.get("experiment_id") is not None else None,
                    tracking_uri=str(data.get("tracking_uri")) if data.get("tracking_uri") else None,
                )
            )
    return links


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else str(value).replace("|", "\\|")


def metrics_table(metrics: Metrics) -> str:
    if not metrics:
        return "_No metrics (the pipeline declares none, or none have been produced yet)._"
    rows = ["| file | metric | value |", "|---|---|---|"]
    for path in sorted(metrics):
        rows += [f"| `{path}` | {key} | {_fmt(v)} |" for key, v in sorted(metrics[path].items())]
    return "\n".join(rows)


def links_table(links: Iterable[RunLink]) -> str:
    links = list(links)
    if not links:
        return "_No MLflow runs recorded (no `reports/*/mlflow_run.json`)._"
    rows = ["| stage | MLflow run | tracking URI |", "|---|---|---|"]
    for link in links:
        if link.skipped:
            rows.append(f"| {link.stage} | skipped | |")
            continue
        run = f"[{link.run_id}]({link.url})" if link.url else f"`{link.run_id}` (experiment {link.experiment_id})"
        rows.append(f"| {link.stage} | {run} | `{link.tracking_uri or ''}` |")
    return "\n".join(rows)


def _delta(value: float | None, base: float | None) -> str:
    if value is None:
        return "–"
    if base is None:
        return _fmt(value)
    return f"{_fmt(value)} ({value - base:+.4g})"


def ablation_table(exps: Mapping[str, ExpRecord], names: Sequence[str], baseline: str | None) -> str:
    """Metrics side by side; non-baseline cells show the delta against ``baseline``."""
    chosen = [n for n in names if n in exps]
    if not chosen:
        return "_No experiments found in `dvc exp show`._"
    keys = sorted({(p, k) for n in chosen for p, vals in exps[n].metrics.items() for k in vals})
    if not keys:
        return "_The experiments have no metrics._"
    base = exps.get(baseline) if baseline else None
    rows = ["| file | metric | " + " | ".join(chosen) + " |", "|---|---|" + "---|" * len(chosen)]
    for path, key in keys:
        ref = base.metrics.get(path, {}).get(key) if base else None
        cells = [
            _fmt(exps[n].metrics.get(path, {}).get(key))
            if n == baseline
            else _delta(exps[n].metrics.get(path, {}).get(key), ref)
            for n in chosen
        ]
        rows.append(f"| `{path}` | {key} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def changed_params(exps: Mapping[str, ExpRecord], names: Sequence[str]) -> str:
    """The params whose values differ between the chosen experiments."""
    chosen = [n for n in names if n in exps]
    flat = {n: {f"{p}:{k}": v for p, vals in exps[n].params.items() for k, v in vals.items()} for n in chosen}
    keys = sorted({k for f in flat.values() for k in f})
    differing = [k for k in keys if len({json.dumps(f.get(k), sort_keys=True) for f in flat.values()}) > 1]
    if not differing:
        return "_No parameter differs._"
    rows = ["| param | " + " | ".join(chosen) + " |", "|---|" + "---|" * len(chosen)]
    rows += [f"| {k} | " + " | ".join(_fmt(flat[n].get(k)) for n in chosen) + " |" for k in differing]
    return "\n".join(rows)
