"""`avf data ...` commands (each is one DVC stage's ``cmd``)."""

from __future__ import annotations

from pathlib import Path

import typer

from avf.cli import common

app = typer.Typer(no_args_is_help=True)


@app.command("synth")
def synth(
    out: Path = typer.Option(Path("data/raw"), "--out", help="Folder that receives one sub-folder per dataset."),
) -> None:
    """Generate the embedded demo dataset (DVC stage ``synth``): RAVDESS- and CREMA-D-style talking faces."""
    params = common.load()
    from avf.data.synth import generate_all

    summary = generate_all(params.data.synth, out, workers=params.data.workers)
    common.console.print(summary.table())


@app.command("import-lists")
def import_lists(
    split_root: Path = typer.Argument(..., help="Folder holding split0K/{train,test[,val]}.csv."),
    dataset: str = typer.Option(..., "--dataset", "-d", help="Adapter name, e.g. cremad, ravdess, mafw."),
    out: Path = typer.Option(Path("data/official_splits.csv"), "--out", help="Output CSV table."),
    rewrite: list[str] = typer.Option([], "--rewrite", help="OLD_PREFIX=NEW_PREFIX for the authors' paths."),
) -> None:
    """Import HiCMAE / AVF-MAE list files: the official fold membership of each clip, as a CSV table."""
    from avf.data.listfiles import parse_rewrite, read_official_splits
    from avf.utils.io import atomic_path

    try:
        table = read_official_splits(split_root, dataset, parse_rewrite(rewrite))
    except FileNotFoundError as exc:
        common.fail(str(exc), common.EXIT_MISSING)
    except (KeyError, ValueError) as exc:
        common.fail(str(exc), common.EXIT_USAGE)
    with atomic_path(out) as tmp:
        table.to_csv(tmp, index=False)
    counts = table.groupby(["fold", "split"]).size()
    common.console.print(f"{len(table)} list lines, {table['clip_id'].nunique()} clips -> {out}")
    common.console.print(counts.to_string())
