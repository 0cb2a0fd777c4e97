"""``avf predict`` (a fine-tuned model on raw videos) and ``avf export`` (package folder + ONNX).

Only inputs, outputs and switches are flags; windows, stride, views and batch sizes live in the
``predict`` section of ``params.yaml`` (its defaults apply when there is no params file).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from avf.cli import common

if TYPE_CHECKING:
    from avf.config import Params
    from avf.predict import Predictor
    from avf.predict.heads import DatasetHead

__all__ = ["export", "predict", "run_summary"]


def _params() -> Params:
    """The params file; without one (the default name, absent) the built-in defaults."""
    from avf.config import Params

    if not common.STATE.params_path.exists() and common.STATE.params_path == Path("params.yaml"):
        return Params()
    return common.load()


def predict(
    inputs: list[str] = typer.Argument(
        ..., help="Videos, folders (recursive), globs ('data/**/*.mp4') or manifests (.parquet/.csv/.txt)."
    ),
    model: str = typer.Option(
        ..., "--model", "-m", help="Stage folder, package, .safetensors, official checkpoint or models:/NAME@alias."
    ),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder (windows/videos .jsonl + .csv)."),
    card: Path | None = typer.Option(None, "--card", help="card.json for a checkpoint that has none next to it."),
    dataset: str | None = typer.Option(
        None,
        "--dataset",
        help="Dataset of params.yaml (or adapter name) whose classes name the outputs (checked against the model's).",
    ),
    plot: bool = typer.Option(False, "--plot", help="Also write a timeline PNG per video (plots/)."),
    render: bool = typer.Option(False, "--render", help="Also write an annotated MP4 per video (renders/)."),
    ray: bool = typer.Option(False, "--ray", help="Run as a Ray Data job writing Parquet (predictions.parquet/)."),
    runtime: str = typer.Option(
        "torch", "--runtime", help="torch, or onnxruntime (the model exported to ONNX, run on the CPU)."
    ),
    precision: str = typer.Option(
        "fp32", "--precision", help="fp32, or bf16 (torch runtime: fast on GPUs and CPUs with bf16 units)."
    ),
) -> None:
    """Predict per window and per video with a fine-tuned model, using its training preprocessing."""
    from avf.predict.inputs import expand_inputs
    from avf.predict.predictor import PRECISIONS, RUNTIMES

    common.quiet_stage("predict")
    if runtime not in RUNTIMES:
        common.fail(f"--runtime {runtime}: one of {', '.join(RUNTIMES)}", common.EXIT_USAGE)
    if precision not in PRECISIONS:
        common.fail(f"--precision {precision}: one of {', '.join(PRECISIONS)}", common.EXIT_USAGE)
    params = _params()
    try:
        paths = expand_inputs(inputs, params.predict.extensions)
    except (OSError, ValueError) as e:
        common.fail(str(e), common.EXIT_USAGE)
    if not paths:
        common.fail(
            f"no videos found in {inputs} (extensions: {' '.join(params.predict.extensions)})", common.EXIT_MISSING
        )
    if card is not None:
        common.require_file(card, "card")
    if ray:
        if runtime != "torch" or precision != "fp32":
            common.fail("--runtime and --precision are not available with --ray (run without --ray)", common.EXIT_USAGE)
        if plot or render:
            common.fail(
                "--plot/--render are not available with --ray (run without --ray for pictures)", common.EXIT_USAGE
            )
        _predict_ray(model, paths, out, params, card, dataset)
        return
    _predict_local(model, paths, out, params, card, plot, render, dataset, runtime, precision)


def _head(dataset: str | None) -> DatasetHead | None:
    """The head of ``--dataset`` (see ``common.dataset_head``; None without the option)."""
    return common.dataset_head(dataset) if dataset is not None else None


def _load(
    model: str,
    params: Params,
    card: Path | None,
    dataset: str | None = None,
    runtime: str = "torch",
    precision: str = "fp32",
) -> Predictor:
    from avf.predict import Predictor
    from avf.tracking import TrackingUnavailableError

    head = _head(dataset)
    try:
        return Predictor.from_uri(
            model, params.predict, card=card, data=params.data, head=head, runtime=runtime, precision=precision
        )
    except FileNotFoundError as e:
        common.fail(str(e), common.EXIT_MISSING)
    except TrackingUnavailableError as e:
        common.fail(str(e), common.EXIT_MISSING)
    except (ValueError, KeyError) as e:
        common.fail(f"cannot load model {model}: {e}", common.EXIT_USAGE)


def _predict_local(
    model: str,
    paths: list[str],
    out: Path,
    params: Params,
    card: Path | None,
    plot: bool,
    render: bool,
    dataset: str | None,
    runtime: str,
    precision: str,
) -> None:
    from avf.predict.outputs import PredictionWriter, video_ids
    from avf.predict.plot import timeline_png
    from avf.predict.render import render_video

    predictor = _load(model, params, card, dataset, runtime, precision)
    ids = dict(zip(paths, video_ids(paths), strict=True))
    t0 = time.perf_counter()
    seconds = 0.0
    with PredictionWriter(out, predictor.spec) as writer:
        try:
            results = predictor.predict_paths(paths, keep_prepared=plot or render)
        except FileNotFoundError as e:  # the face detector model
            common.fail(str(e), common.EXIT_MISSING)
        for pred in results:
            vid = ids[pred.path]
            rec = writer.write(pred, vid)
            seconds += pred.duration_s
            if pred.prepared is not None:
                if plot:
                    timeline_png(pred, predictor.spec, out / "plots" / f"{vid}.png", params.predict.thumbnails)
                if render:
                    render_video(pred, predictor.spec, out / "renders" / f"{vid}.mp4", params.predict.render_crf)
                pred.prepared = None
            what = rec["error"] if not rec["ok"] else _verdict(rec)
            common.console.print(f"{vid}: {what}", highlight=False, markup=False)
    common.console.print(
        run_summary(writer.videos, writer.failed, seconds, time.perf_counter() - t0, out), highlight=False
    )
    if writer.failed == writer.videos:
        raise typer.Exit(common.EXIT_FAILED)


def run_summary(videos: int, failed: int, seconds: float, took: float, out: Path) -> str:
    """The closing line of ``avf predict``: the speed only when some video was read."""
    speed = f" ({took / seconds:.2f} s per video-second)" if seconds > 0 else ""
    return f"{videos} video(s), {failed} failed, {seconds:.1f} s of video in {took:.1f} s{speed} -> {out}"


def _verdict(rec: dict[str, Any]) -> str:
    flagged = rec["num_windows"] - rec["windows_predicted"]
    note = f" ({flagged} of {rec['num_windows']} windows flagged)" if flagged else ""
    if rec.get("probabilities") is not None:
        return f"{rec['label']} {rec['confidence']:.2f}{note}"
    values = rec.get("values") or {}
    return ", ".join(f"{k} {v:+.3f}" for k, v in values.items()) + note


def _predict_ray(
    model: str, paths: list[str], out: Path, params: Params, card: Path | None, dataset: str | None
) -> None:
    import json

    from avf.predict.batch import run_ray_job

    card_dict = json.loads(card.read_text()) if card is not None else None
    t0 = time.perf_counter()
    try:
        path = run_ray_job(model, paths, out, params, card_dict, _head(dataset))
    except ValueError as e:  # e.g. a GPU device on a cluster without GPUs
        common.fail(str(e), common.EXIT_USAGE)
    common.console.print(f"{len(paths)} video(s) in {time.perf_counter() - t0:.1f} s -> {path}", highlight=False)


def export(
    model: str = typer.Argument(..., help="Stage folder, .safetensors, official checkpoint or models:/NAME@alias."),
    out: Path = typer.Option(..., "--out", "-o", help="Package folder to write (replaced atomically)."),
    onnx: bool = typer.Option(False, "--onnx", help="Also write model.onnx and check it against PyTorch."),
    card: Path | None = typer.Option(None, "--card", help="card.json for a checkpoint that has none next to it."),
) -> None:
    """Export a fine-tuned model as a self-contained package (weights, config, face models) [+ ONNX]."""
    from avf.predict.export import export_package

    params = _params()
    if card is not None:
        common.require_file(card, "card")
    predictor = _load(model, params, card)
    try:
        config = export_package(predictor.model, predictor.spec, out, onnx=onnx)
    except FileNotFoundError as e:
        common.fail(str(e), common.EXIT_MISSING)
    files = ", ".join(sorted(p.name for p in out.iterdir()))
    extra = f", ONNX max |diff| vs PyTorch {config['onnx_max_abs_diff']:.2e}" if onnx else ""
    common.console.print(f"{predictor.spec.task}, {predictor.spec.num_outputs} outputs -> {out} ({files}){extra}")
