"""The ``avf`` command line: a thin layer over the library (every stage is one function in ``avf``)."""

from __future__ import annotations

from pathlib import Path

import typer

from avf.cli import common
from avf.cli.data import app as data_app
from avf.cli.doctor import doctor
from avf.cli.eval import app as eval_app
from avf.cli.exp import app as exp_app
from avf.cli.model import app as model_app
from avf.cli.predict import export, predict
from avf.cli.registry import app as registry_app
from avf.cli.report import app as report_app
from avf.cli.train import app as train_app
from avf.env import apply_defaults

app = typer.Typer(
    name="avf",
    help="AVF-MAE++ pipeline: data preparation, three-stage training, evaluation, registry and reports.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root(
    ctx: typer.Context,
    params: Path = typer.Option(Path("params.yaml"), "--params", "-p", help="Parameters file (DVC params)."),
    verbose: int = typer.Option(0, "--verbose", "-v", count=True, help="Other programs' output too (-vv: debug)."),
) -> None:
    common.STATE.params_path = params
    common.STATE.verbose = verbose
    apply_defaults()
    common.setup_logging(verbose)
    ctx.call_on_close(common.end_quiet)


app.add_typer(data_app, name="data", help="Data preparation: demo data, faces, audio, manifests, shards.")
app.add_typer(train_app, name="train", help="Training stages: pretrain, intermediate, finetune.")
app.add_typer(eval_app, name="eval", help="Evaluation of fine-tuned models.")
app.add_typer(registry_app, name="registry", help="MLflow model registry: register, promote, list.")
app.add_typer(model_app, name="model", help="Model utilities: build, summarize, import official checkpoints.")
app.add_typer(exp_app, name="exp", help="Ablation batches: arms x folds x seeds queued as DVC experiments.")
app.add_typer(report_app, name="report", help="Reports: ablation comparisons, intervals, README tables.")
app.command("predict", help="Predict with a fine-tuned model on raw videos (per window and per video).")(predict)
app.command("export", help="Export a fine-tuned model: self-contained package folder, optionally ONNX.")(export)
app.command("doctor", help="Check the installation: versions, CPU/GPU, face assets, tracking, Ray, disk.")(doctor)


def main() -> None:
    common.STATE.whole_process = True
    app()
