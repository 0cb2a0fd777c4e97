"""`avf registry ...`: register, promote, list and alias MLflow models; replay tracking buffers.

The ``register`` DVC stage calls ``avf registry register --from-run-file reports/finetune/mlflow_run.json``;
``promote`` is run by a lead or a Prefect flow. Every command uses the tracking URI from
``MLFLOW_TRACKING_URI`` or ``params.tracking.uri``.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path

import typer

from avf.cli import common

app = typer.Typer(no_args_is_help=True)


@contextlib.contextmanager
def _mlflow_errors() -> Iterator[None]:
    """Turn tracking failures into one-line errors with the documented exit codes."""
    from avf import tracking

    try:
        yield
    except tracking.TrackingUnavailableError as e:
        common.fail(str(e), common.EXIT_MISSING)
    except Exception as e:
        if tracking.is_mlflow_error(e):
            common.fail(f"MLflow: {str(e).splitlines()[0]}", common.EXIT_FAILED)
        raise


def _parse_tags(pairs: list[str]) -> dict[str, str]:
    tags: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            common.fail(f"--tag expects KEY=VALUE, got {pair!r}", common.EXIT_USAGE)
        tags[key] = value
    return tags


@app.command("register")
def register(
    model_uri: str | None = typer.Option(None, "--model-uri", help="Model to register, e.g. models:/m-<id>."),
    from_run_file: Path | None = typer.Option(
        None, "--from-run-file", help="The stage's reports/<stage>/mlflow_run.json (its run, and its model if logged)."
    ),
    model_dir: Path | None = typer.Option(
        None, "--model-dir", help="Log this fine-tuned folder as the served video model under the run file's run."
    ),
    name: str | None = typer.Option(
        None, "--name", help="Registered model [default: params.tracking.registered_model]."
    ),
    alias: str = typer.Option("candidate", "--alias", help="Alias for the new version ('' for none)."),
    metrics_file: Path | None = typer.Option(
        None,
        "--metrics-file",
        "--metrics",
        help="metrics.json whose numbers become version tags (promote reads them).",
    ),
    tag: list[str] = typer.Option([], "--tag", help="Extra version tag KEY=VALUE (repeatable)."),
    out: Path | None = typer.Option(None, "--out", help="Write {name, version, alias, model_uri} as JSON here."),
) -> None:
    """Register a model as a new version and point an alias at it (DVC stage: register)."""
    from avf.predict.register import register_model

    common.quiet_stage("register")
    params = common.load()
    tags = _parse_tags(tag)
    try:
        with _mlflow_errors():
            reg = register_model(
                params,
                model_uri=model_uri,
                run_file=from_run_file,
                model_dir=model_dir,
                metrics_file=metrics_file,
                name=name,
                alias=alias or None,
                tags=tags,
                out=out,
            )
    except (FileNotFoundError, LookupError) as e:
        common.fail(str(e).strip("'\""), common.EXIT_MISSING)
    except ValueError as e:
        common.fail(str(e), common.EXIT_USAGE)
    typer.echo(f"registered {reg.name} version {reg.version}" + (f" as @{reg.alias}" if reg.alias else ""))


@app.command("promote")
def promote(
    name: str | None = typer.Argument(None, help="Registered model [default: params.tracking.registered_model]."),
    metric: str | None = typer.Option(None, "--metric", help="[default: params.tracking.promote_metric]"),
    mode: str | None = typer.Option(None, "--mode", help="max or min [default: params.tracking.promote_mode]"),
    candidate: str = typer.Option("candidate", "--candidate-alias"),
    champion: str = typer.Option("champion", "--champion-alias"),
    note: str | None = typer.Option(None, "--note", help="Why, recorded in the version tags."),
    require: bool = typer.Option(False, "--require", help="Exit 1 when the candidate is not promoted."),
    out: Path | None = typer.Option(None, "--out", help="Write the decision as JSON here."),
) -> None:
    """Move @champion to @candidate when its metric beats the champion's (and say why, or why not)."""
    from dataclasses import asdict

    from avf import tracking
    from avf.utils.io import write_json

    params = common.load()
    model_name = name or params.tracking.registered_model
    metric = metric or params.tracking.promote_metric
    mode = mode or params.tracking.promote_mode
    if mode not in ("max", "min"):
        common.fail(f"--mode must be max or min, got {mode!r}", common.EXIT_USAGE)
    tracking.configure(params)
    with _mlflow_errors():
        decision = tracking.promote(model_name, metric, mode, candidate, champion, note=note)
    verdict = f"promoted v{decision.candidate_version} to @{champion}" if decision.promoted else "not promoted"
    typer.echo(f"{model_name}: {verdict}: {decision.reason}")
    if out is not None:
        write_json(out, {"name": model_name, **asdict(decision)})
    if require and not decision.promoted:
        raise typer.Exit(common.EXIT_FAILED)


@app.command("list")
def list_versions(
    name: str | None = typer.Argument(None, help="Only this registered model."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """List registered model versions with their aliases and the promotion metric."""
    from rich.console import Console
    from rich.table import Table

    from avf import tracking

    params = common.load()
    tracking.configure(params)
    metric = params.tracking.promote_metric
    with _mlflow_errors():
        rows = tracking.list_versions(name)
        for r in rows:
            r[metric] = tracking.version_metric(r["name"], r["version"], metric)
    if as_json:
        typer.echo(json.dumps(rows, indent=2, default=str))
        return
    if not rows:
        typer.echo(f"no registered versions{f' of {name}' if name else ''} in {tracking.current_uri()}")
        return
    table = Table("model", "version", "aliases", metric, "run", "created")
    for r in rows:
        value = r[metric]
        table.add_row(
            r["name"],
            str(r["version"]),
            ", ".join(f"@{a}" for a in r["aliases"]),
            "" if value is None else f"{value:.4f}",
            (r["run_id"] or "")[:12],
            r["created"],
        )
    Console().print(table)


@app.command("set-alias")
def set_alias(
    name: str = typer.Argument(..., help="Registered model."),
    alias: str = typer.Argument(..., help="Alias, e.g. baseline."),
    version: int = typer.Argument(..., help="Version number."),
) -> None:
    """Point an alias at a version by hand (e.g. @baseline for the paper reproduction)."""
    from avf import tracking

    tracking.configure(common.load())
    with _mlflow_errors():
        tracking.set_alias(name, alias, version)
    typer.echo(f"{name}@{alias} -> version {version}")


@app.command("flush-buffer")
def flush_buffer(
    buffer_dir: Path | None = typer.Option(
        None, "--buffer-dir", help="[default: $AVF_MLFLOW_BUFFER_DIR or runs/mlflow-buffer]"
    ),
    tracking_uri: str | None = typer.Option(
        None, "--tracking-uri", help="Send to this store instead of the one each buffer recorded."
    ),
) -> None:
    """Replay metrics buffered while the tracking server was down and finish their runs."""
    from avf import tracking

    with _mlflow_errors():
        reports = tracking.flush_buffers(buffer_dir, tracking_uri)
    if not reports:
        typer.echo("no buffered tracking data")
        return
    bad = 0
    for r in reports:
        end = f", run ended {r.end_status}" if r.end_status else ""
        extra = f" ({r.message})" if r.message else ""
        typer.echo(f"{r.run_id}: {r.state}: {r.sent} entries sent, {r.left} left{end}{extra}")
        bad += r.state in ("unreachable", "error")
    if bad:
        raise typer.Exit(common.EXIT_FAILED)
