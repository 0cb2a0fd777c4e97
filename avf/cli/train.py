"""`avf train ...`: the three training stages (DVC stages ``pretrain``, ``intermediate``, ``finetune``)."""

from __future__ import annotations

from pathlib import Path

import typer

from avf.cli import common

app = typer.Typer(no_args_is_help=True)

SHARDS = typer.Option(Path("data/shards"), "--shards", help="Root of the per-dataset shard folders.")
MANIFESTS = typer.Option(Path("data/manifest"), "--manifests", help="Folder of per-dataset manifests.")
STORAGE = typer.Option(None, "--storage", help="Ray/in-process checkpoint storage (default: params ray.storage_path).")


def _run(fn, *args, **kwargs):  # type: ignore[no-untyped-def]
    try:
        return fn(*args, **kwargs)
    except (ValueError, KeyError) as e:
        common.fail(str(e).strip("'\""), common.EXIT_USAGE)
    except FileNotFoundError as e:
        common.fail(str(e), common.EXIT_MISSING)
    except RuntimeError as e:
        common.fail(str(e), common.EXIT_FAILED)


def _print(summary: dict) -> None:
    from rich.table import Table

    shown = {k: f"{v:.4g}" if isinstance(v, float) else str(v) for k, v in summary.items()}
    table = Table(title=f"stage {summary.get('stage')}")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for k, v in shown.items():
        table.add_row(k, v)
    line = ", ".join(f"{k} {v}" for k, v in shown.items() if k != "stage")
    common.summary(table, f"stage {summary.get('stage')}: {line}")


@app.command("pretrain")
def pretrain(
    shards: Path = SHARDS,
    out: Path = typer.Option(Path("models/pretrain"), "--out"),
    reports: Path = typer.Option(Path("reports/pretrain"), "--reports"),
    storage: Path | None = STORAGE,
) -> None:
    """Stage 1: self-supervised audio-visual masked autoencoding (DVC stage ``pretrain``)."""
    common.quiet_stage("pretrain")
    params = common.load()
    from avf.train.stages import run_pretrain

    _print(_run(run_pretrain, params, shards, out, reports, storage or Path(params.ray.storage_path)))


@app.command("intermediate")
def intermediate(
    manifests: Path = MANIFESTS,
    shards: Path = SHARDS,
    pretrain: Path = typer.Option(Path("models/pretrain"), "--pretrain", help="Stage-1 output folder."),
    out: Path = typer.Option(Path("models/intermediate"), "--out"),
    reports: Path = typer.Option(Path("reports/intermediate"), "--reports"),
    storage: Path | None = STORAGE,
) -> None:
    """Stage 2: hybrid intermediate fine-tuning on the labelled mixture (DVC stage ``intermediate``)."""
    common.quiet_stage("intermediate")
    params = common.load()
    from avf.train.stages import run_supervised

    common.require_file(pretrain / "model.safetensors", "stage-1 model")
    _print(
        _run(
            run_supervised,
            params,
            "intermediate",
            manifests,
            shards,
            out,
            reports,
            storage or Path(params.ray.storage_path),
            pretrain,
            None,
        )
    )


@app.command("finetune")
def finetune(
    manifests: Path = MANIFESTS,
    shards: Path = SHARDS,
    pretrain: Path | None = typer.Option(Path("models/pretrain"), "--pretrain", help="Stage-1 output folder."),
    intermediate: Path | None = typer.Option(Path("models/intermediate"), "--intermediate", help="Stage-2 output."),
    out: Path = typer.Option(Path("models/finetune"), "--out"),
    reports: Path = typer.Option(Path("reports/finetune"), "--reports"),
    storage: Path | None = STORAGE,
) -> None:
    """Stage 3: targeted fine-tuning on ``data.target`` and ``data.split.fold`` (DVC stage ``finetune``)."""
    common.quiet_stage("finetune")
    params = common.load()
    from avf.train.stages import run_supervised

    pre = pretrain if pretrain is not None and (pretrain / "model.safetensors").exists() else None
    mid = intermediate if intermediate is not None and (intermediate / "card.json").exists() else None
    _print(
        _run(
            run_supervised,
            params,
            "finetune",
            manifests,
            shards,
            out,
            reports,
            storage or Path(params.ray.storage_path),
            pre,
            mid,
        )
    )
