"""`avf model ...` commands: import official checkpoints, summarize a registered model."""

from __future__ import annotations

from pathlib import Path

import typer

from avf.cli import common
from avf.cli.predict import export

app = typer.Typer(no_args_is_help=True)


@app.command("import-official")
def import_official(
    src: Path = typer.Argument(..., help="Checkpoint saved by XuecWu/AVF-MAE (.pth; state dict under model/module)."),
    dst: Path = typer.Argument(..., help="Output .safetensors file (our parameter names)."),
    kind: str = typer.Option("auto", "--kind", help="auto | pretrain | finetune."),
    size: str = typer.Option("auto", "--size", help="auto | base | large | huge (tiny also accepted)."),
    dataset: str | None = typer.Option(
        None,
        "--dataset",
        help="Dataset of params.yaml (or adapter name) the head was fine-tuned on: its classes name the outputs.",
    ),
    classes: str | None = typer.Option(
        None, "--classes", help="The head's class names in head order (comma-separated); checked against --dataset."
    ),
) -> None:
    """Convert an official AVF-MAE++ checkpoint into this project's layout (strict: every key is checked)."""
    if kind not in ("auto", "pretrain", "finetune"):
        common.fail(f"--kind must be auto, pretrain or finetune, got {kind!r}", common.EXIT_USAGE)
    if not src.is_file():
        common.fail(f"checkpoint not found: {src}", common.EXIT_MISSING)
    from avf.artifacts.official import write_converted
    from avf.predict.heads import DatasetHead, check_head_names

    head = common.dataset_head(dataset) if dataset is not None else None
    try:
        if classes is not None:
            names = tuple(c.strip() for c in classes.split(",") if c.strip())
            if head is not None:
                check_head_names(names, head, str(src))
            head = head or DatasetHead("", "classification", names)
    except ValueError as exc:
        common.fail(str(exc), common.EXIT_USAGE)
    try:
        info = write_converted(
            src,
            dst,
            kind=kind,
            size=size,
            outputs=head.names if head else None,
            task=head.task if head else "classification",
            dataset=head.dataset if head and head.dataset else None,
        )
    except ValueError as exc:
        common.fail(str(exc), common.EXIT_FAILED)
    named = f", outputs {', '.join(head.names)}" if head else ""
    common.console.print(
        f"{info['kind']} / {info['size']} ({info['model']}), {info['tensors']} tensors, "
        f"{int(info['parameters']):,} values{named} -> {dst}"
    )


@app.command("summary")
def summary(
    name: str = typer.Argument(..., help="Registered model, e.g. avf_mae_pp_pretrain_base or avf_mae_pp_tiny."),
    num_classes: int = typer.Option(0, "--num-classes", help="Head size for fine-tuning models."),
    depth: int = typer.Option(1, "--depth", min=1, help="Module name components per row."),
    flops: bool = typer.Option(False, "--flops", help="Also count forward FLOPs (batch 1, meta device)."),
) -> None:
    """Parameters per module (and optionally forward FLOPs) of a registered model, built on the meta device."""
    import torch
    from rich.table import Table

    from avf.models import create_model
    from avf.models.summary import forward_flops, parameter_table

    kwargs = {"num_classes": num_classes} if not name.startswith("avf_mae_pp_pretrain_") else {}
    try:
        with torch.device("meta"):
            model = create_model(name, **kwargs)
    except (ValueError, RuntimeError) as exc:
        common.fail(str(exc), common.EXIT_USAGE)
    table = Table(title=name)
    table.add_column("module")
    table.add_column("parameters", justify="right")
    rows = parameter_table(model, depth)
    for module, count in rows:
        table.add_row(module, f"{count:,}")
    table.add_row("total", f"{sum(c for _, c in rows):,}")
    if flops:
        table.add_row("forward GFLOPs (per clip)", f"{forward_flops(model) / 1e9:.2f}")
    common.console.print(table)


app.command("export", help="Same as `avf export`: package folder (+ ONNX) of a fine-tuned model.")(export)
