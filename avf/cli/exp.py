"""`avf exp ...`: ablation batches as DVC experiments."""

from __future__ import annotations

from pathlib import Path

import typer

from avf.cli import common

app = typer.Typer(no_args_is_help=True)


@app.command("queue")
def queue(
    batch: Path = typer.Argument(..., help="Batch file: arms of params overrides, folds and seeds."),
    project: Path = typer.Option(Path("."), "--project", help="The DVC project folder."),
    arms: str | None = typer.Option(None, "--arms", help="Comma-separated arms to queue (default: all)."),
) -> None:
    """Queue every arm x fold x seed of BATCH with `dvc exp run --queue` (those already present are kept);
    run them with `dvc queue start -j N`, compare them with `avf report compare --batch BATCH`."""
    from avf.report.batch import load_batch, split_arms
    from avf.report.batch import queue as queue_batch

    def show(name: str, new: bool) -> None:
        common.console.print(f"{'queued' if new else 'present'}  {name}", highlight=False)

    try:
        queued = queue_batch(project, load_batch(batch), on_queued=show, only=split_arms(arms))
    except (ValueError, RuntimeError) as e:
        common.fail(str(e), common.EXIT_USAGE)
    except FileNotFoundError as e:
        common.fail(str(e), common.EXIT_MISSING)
    common.console.print(f"{len(queued)} experiments queued; run them with: dvc queue start -j 2", highlight=False)
