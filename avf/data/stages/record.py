"""A finished data stage on record: its report folder and an MLflow run per stage and dataset."""

from __future__ import annotations

import logging
from pathlib import Path

from avf.config import Params
from avf.config.stages import stage_params
from avf.data.report import StageReport

__all__ = ["finish_stage", "track_report"]

log = logging.getLogger(__name__)


def finish_stage(params: Params, report: StageReport, reports: Path) -> Path:
    """Write ``reports/<stage>/<dataset>/`` (summary.json, failures.csv) and record the run in MLflow.

    Returns the report folder. Whether the failures exceed ``data.max_fail_frac`` is the caller's call
    (``report.too_many_failures``): the report is written either way.
    """
    where = report.write(reports, params.data.max_fail_frac)
    track_report(params, report, where)
    return where


def track_report(params: Params, report: StageReport, where: Path) -> str | None:
    """Record a finished data stage in MLflow: one run per stage and dataset under ``<prefix>/data``,
    with the stage's parameters, its counts and timings as metrics and ``summary.json`` / ``failures.csv``
    as artifacts. Returns the run id; None when ``tracking.log_data_stages`` is off or the store is down
    (a warning: the stage's outputs are valid without it). Credentials the server refuses raise
    :class:`~avf.tracking.TrackingAuthError`: they are a setting to fix, not an outage."""
    if not params.tracking.log_data_stages:
        return None
    from avf import tracking

    summary = report.summary(params.data.max_fail_frac)  # what ``report.write`` put in summary.json
    metrics = {k: float(v) for k, v in summary.items() if isinstance(v, int | float) and not isinstance(v, bool)}
    try:
        with tracking.stage_run(
            params,
            stage=report.stage,
            sections=stage_params(report.stage, report.dataset),
            dataset=report.dataset,
            experiment=f"{params.tracking.experiment_prefix}/data",
            run_name=f"{report.stage}-{report.dataset}",
            system_metrics=False,
        ) as run:
            run.log_metrics(metrics, step=0)
            for name in ("summary.json", "failures.csv"):
                if (where / name).exists():
                    run.log_artifact(str(where / name), "report")
            return run.run_id
    except tracking.TrackingAuthError:
        raise
    except tracking.TrackingUnavailableError as exc:
        log.warning("%s %s not recorded in MLflow: %s", report.stage, report.dataset, exc)
        return None
