"""Serve the four deployments from this machine (no work pool, no worker): ``python -m pipelines.serve``.

    PREFECT_API_URL=http://127.0.0.1:4200/api python -m pipelines.serve --project-dir . --timezone Europe/Paris

Schedules: ``nightly-eval`` every day at 03:00, ``ingest-preprocess`` on Mondays at 02:00 (both in
``--timezone``); ``full-pipeline`` and ``ablation-batch`` run on demand (UI or ``prefect deployment
run``). At most one flow run at a time (``limit=1``): the DVC workspace has one lock.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from pathlib import Path

from prefect import serve
from prefect.deployments.runner import RunnerDeployment
from prefect.schedules import Cron

from pipelines.flows import ablation_batch, full_pipeline, ingest, nightly_eval

NIGHTLY_CRON = "0 3 * * *"
INGEST_CRON = "0 2 * * 1"
DEFAULT_TIMEZONE = "UTC"
TIMEZONE_ENV = "AVF_SCHEDULE_TIMEZONE"
EXAMPLE_ABLATIONS = {"baseline": [], "no-iavcl": ["model.iavcl=false"]}


def build_deployments(project_dir: str = ".", timezone: str = DEFAULT_TIMEZONE) -> list[RunnerDeployment]:
    """The four deployments, parameterised with the project directory."""
    project = str(Path(project_dir).resolve())
    tags = ["avf", "dvc"]
    return [
        full_pipeline.to_deployment(
            name="full-pipeline",
            parameters={"project_dir": project},
            tags=tags,
            description="dvc repro, or dvc exp run -n EXP_NAME -S key=value ... with overrides.",
        ),
        ingest.to_deployment(
            name="ingest-preprocess",
            schedules=[Cron(INGEST_CRON, timezone=timezone)],
            parameters={"project_dir": project},
            tags=tags,
            description="New raw videos -> faces, audio, manifest, shards (weekly).",
        ),
        nightly_eval.to_deployment(
            name="nightly-eval",
            schedules=[Cron(NIGHTLY_CRON, timezone=timezone)],
            parameters={"project_dir": project},
            tags=tags,
            description="dvc repro evaluate register, then avf registry promote.",
        ),
        ablation_batch.to_deployment(
            name="ablation-batch",
            parameters={"project_dir": project, "experiments": EXAMPLE_ABLATIONS, "baseline": "baseline"},
            tags=tags,
            description="One dvc exp run per experiment, then avf report ablations.",
        ),
    ]


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m pipelines.serve", description=__doc__.split("\n\n")[0])
    parser.add_argument("--project-dir", default=".", help="DVC project root the flows run in [.]")
    parser.add_argument(
        "--timezone",
        default=os.environ.get(TIMEZONE_ENV, DEFAULT_TIMEZONE),
        help=f"IANA time zone of the cron schedules [${TIMEZONE_ENV} or {DEFAULT_TIMEZONE}]",
    )
    parser.add_argument("--limit", type=int, default=1, help="concurrent flow runs (1: one DVC workspace) [1]")
    args = parser.parse_args(argv)
    serve(*build_deployments(args.project_dir, args.timezone), limit=args.limit)


if __name__ == "__main__":  # pragma: no cover
    main()
