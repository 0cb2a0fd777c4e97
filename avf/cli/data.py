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

    summary = generate_all(params.data.synth, out)
    common.console.print(summary.table())
