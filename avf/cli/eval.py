"""`avf eval ...` (DVC stage ``evaluate``)."""

from __future__ import annotations

from pathlib import Path

import typer

from avf.cli import common

app = typer.Typer(no_args_is_help=True)


@app.command("run")
def run(
    model: Path = typer.Option(Path("models/finetune"), "--model", help="Stage-3 output folder."),
    manifests: Path = typer.Option(Path("data/manifest"), "--manifests"),
    shards: Path = typer.Option(Path("data/shards"), "--shards"),
    out: Path = typer.Option(Path("reports/eval"), "--out"),
) -> None:
    """Evaluate the fine-tuned model on the test split of its fold with the test-time views."""
    common.quiet_stage("evaluate")
    params = common.load()
    from avf.eval.run import evaluate

    common.require_file(model / "card.json", "model card")
    try:
        result = evaluate(params, model, manifests, shards, out)
    except (ValueError, KeyError) as e:
        common.fail(str(e), common.EXIT_USAGE)
    from rich.table import Table

    title = f"evaluation: {result['dataset']} fold {result['fold']}"
    shown = {k: f"{v:.2f}" if isinstance(v, float) else str(v) for k, v in result.items()}
    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for k, v in shown.items():
        table.add_row(k, v)
    common.summary(table, f"{title}: " + ", ".join(f"{k} {v}" for k, v in shown.items()))
