"""`avf data ...` commands (each is one DVC stage's ``cmd``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from avf.cli import common

app = typer.Typer(no_args_is_help=True)


@app.command("synth")
def synth(
    out: Path = typer.Option(Path("data/raw"), "--out", help="Folder that receives one sub-folder per dataset."),
) -> None:
    """Generate the embedded demo dataset (DVC stage ``synth``): RAVDESS- and CREMA-D-style talking faces."""
    common.quiet_stage("synth")
    params = common.load()
    from avf.demo import generate_all

    summary = generate_all(params.data.synth, out, workers=params.data.workers)
    common.summary(summary.table(), summary.line())


@app.command("import-lists")
def import_lists(
    split_root: Path = typer.Argument(..., help="Folder holding split0K/{train,test[,val]}.csv."),
    dataset: str = typer.Option(..., "--dataset", "-d", help="Adapter name, e.g. cremad, ravdess, mafw."),
    out: Path = typer.Option(Path("data/official_splits.csv"), "--out", help="Output CSV table."),
    rewrite: list[str] = typer.Option([], "--rewrite", help="OLD_PREFIX=NEW_PREFIX for the authors' paths."),
) -> None:
    """Import HiCMAE / AVF-MAE list files: the official fold membership of each clip, as a CSV table."""
    from avf.data.adapters import get_adapter
    from avf.data.adapters.listfiles import import_official_splits, parse_rewrite

    try:
        table = import_official_splits(split_root, get_adapter(dataset), out, parse_rewrite(rewrite))
    except FileNotFoundError as exc:
        common.fail(str(exc), common.EXIT_MISSING)
    except (KeyError, ValueError) as exc:
        common.fail(str(exc), common.EXIT_USAGE)
    counts = table.groupby(["fold", "split"]).size()
    common.console.print(f"{len(table)} list lines, {table['clip_id'].nunique()} clips -> {out}")
    common.console.print(counts.to_string())


# ---- the preprocessing stages (faces -> audio -> manifest -> shards) and inspect --------------------


def _dataset_spec(params: Any, name: str) -> Any:
    try:
        return params.data.dataset(name)
    except KeyError as exc:
        common.fail(str(exc.args[0]), common.EXIT_USAGE)


def _finish_stage(report: Any, params: Any, reports: Path) -> None:
    """Record the stage (avf.data.stages.record), print its summary table, exit 1 past data.max_fail_frac."""
    from avf.data.stages.record import finish_stage

    where = finish_stage(params, report, reports)
    common.summary(report.table(), report.line(), f"report: {where}/summary.json, failures: {where}/failures.csv")
    if report.too_many_failures(params.data.max_fail_frac):
        common.fail(
            f"{report.stage} {report.dataset}: {report.failed} of {report.total} clips failed "
            f"({report.fail_frac:.1%} > data.max_fail_frac {params.data.max_fail_frac:.1%}); see {where}/failures.csv"
        )


def _run_stage(stage: str, dataset: str, reports: Path, body: Any) -> None:
    """Run ``body(params, spec, report)``; SIGTERM exits 143 like Ctrl-C raises, so the half-written temp file
    of the clip in progress is removed and the worker processes are ended, instead of dying mid-write."""
    from avf.data.manifest import ManifestError
    from avf.data.report import StageReport
    from avf.runtime.lifecycle import sigterm_raises

    common.quiet_stage(f"{stage}-{dataset}")
    params = common.load()
    spec = _dataset_spec(params, dataset)
    report = StageReport(stage, spec.name)
    try:
        with sigterm_raises():
            body(params, spec, report)
    except FileNotFoundError as exc:
        common.fail(str(exc), common.EXIT_MISSING)
    except (KeyError, ValueError, ManifestError) as exc:
        common.fail(f"{stage} {spec.name}: {exc}", common.EXIT_USAGE)
    _finish_stage(report, params, reports)


_REPORTS = typer.Option(Path("reports"), "--reports", help="Folder for <stage>/<dataset>/failures.csv, summary.json.")
_DATASET = typer.Option(..., "--dataset", "-d", help="A dataset name from params.yaml data.datasets.")


@app.command("faces")
def faces(
    dataset: str = _DATASET,
    out: Path = typer.Option(..., "--out", help="Face clips + sidecars, e.g. data/interim/faces/<dataset>."),
    reports: Path = _REPORTS,
) -> None:
    """Detect, track and crop faces of every clip (DVC stage ``faces``): <clip>.mkv + <clip>.json."""
    from avf.data.stages.faces import run_faces

    def body(params: Any, spec: Any, report: Any) -> None:
        from avf import assets

        face = params.data.face
        for model in [face.detector_model] + ([face.landmark_model] if face.align else []):
            try:
                assets.require(model)
            except (FileNotFoundError, ValueError) as e:  # missing, or a pinned file changed in place
                common.fail(str(e), common.EXIT_MISSING)
        run_faces(spec, out, params.data, report, ray_address=params.ray.address)

    _run_stage("faces", dataset, reports, body)


@app.command("audio")
def audio(
    dataset: str = _DATASET,
    faces_dir: Path = typer.Option(..., "--faces", help="Output folder of `avf data faces`."),
    out: Path = typer.Option(..., "--out", help="16 kHz wavs + sidecars, e.g. data/interim/audio/<dataset>."),
    reports: Path = _REPORTS,
) -> None:
    """Extract 16 kHz mono audio aligned to each face clip (DVC stage ``audio``): <clip>.wav + <clip>.json."""
    from avf.data.stages.audio import run_audio

    def body(params: Any, spec: Any, report: Any) -> None:
        common.require_file(faces_dir, "faces folder")
        run_audio(spec, faces_dir, out, params.data, report, ray_address=params.ray.address)

    _run_stage("audio", dataset, reports, body)


@app.command("manifest")
def manifest(
    dataset: str = _DATASET,
    faces_dir: Path = typer.Option(..., "--faces", help="Output folder of `avf data faces`."),
    audio_dir: Path = typer.Option(..., "--audio", help="Output folder of `avf data audio`."),
    out: Path = typer.Option(..., "--out", help="Parquet manifest, e.g. data/manifest/<dataset>.parquet."),
    reports: Path = _REPORTS,
) -> None:
    """Write the dataset's clip index (DVC stage ``manifest``): labels, folds, paths, coverage, status."""
    from avf.data.stages.manifest import run_manifest

    def body(params: Any, spec: Any, report: Any) -> None:
        common.require_file(faces_dir, "faces folder")
        common.require_file(audio_dir, "audio folder")
        run_manifest(spec, faces_dir, audio_dir, out, report)

    _run_stage("manifest", dataset, reports, body)


@app.command("shards")
def shards(
    dataset: str = _DATASET,
    manifest_path: Path = typer.Option(..., "--manifest", help="Output of `avf data manifest`."),
    out: Path = typer.Option(..., "--out", help="Shard folder, e.g. data/shards/<dataset>."),
    reports: Path = _REPORTS,
) -> None:
    """Pack the usable clips into WebDataset shards + index.json (DVC stage ``shards``)."""
    from avf.data.stages.shards import run_shards

    def body(params: Any, spec: Any, report: Any) -> None:
        common.require_file(manifest_path, "manifest")
        run_shards(spec.name, manifest_path, out, params.data, report)

    _run_stage("shards", dataset, reports, body)


@app.command("inspect")
def inspect(
    path: Path = typer.Argument(..., help="A manifest (.parquet) or a shard folder (with index.json)."),
    verify: bool = typer.Option(False, "--verify", help="Shards: read and decode every sample."),
) -> None:
    """Summarize a manifest or a shard folder (counts, labels, folds, sizes; optionally verify samples)."""
    from rich.table import Table

    from avf.data.inspect import corrupt_samples, first_sample
    from avf.data.manifest import ManifestError, read_manifest
    from avf.data.shards import INDEX_NAME, CorruptSampleError, ShardIndex

    common.require_file(path, "path")
    if path.is_dir():
        try:
            index = ShardIndex.load(path)
        except (FileNotFoundError, ValueError) as exc:
            common.fail(str(exc), common.EXIT_USAGE)
        table = Table(title=f"{path} ({INDEX_NAME})")
        for col in ("shard", "samples", "MiB"):
            table.add_column(col, justify="right" if col != "shard" else "left")
        for s in index.shards:
            table.add_row(s.name, str(s.num_samples), f"{s.bytes / 2**20:.1f}")
        table.add_row("total", str(index.num_samples), f"{sum(s.bytes for s in index.shards) / 2**20:.1f}")
        common.console.print(table)
        common.console.print(f"dataset {index.dataset}, audio member: {index.audio}, fingerprint {index.fingerprint}")
        try:
            first = first_sample(path, index)
        except CorruptSampleError as exc:  # reported (and counted by --verify), not a traceback
            common.console.print(f"[red]first sample corrupt:[/] {exc}", highlight=False)
        else:
            if first is not None:
                common.console.print(
                    f"first sample {first.key}: {first.jpg_frames} jpg frames + {first.others}", highlight=False
                )
        if verify:
            bad = 0
            for exc in corrupt_samples(path, index):
                bad += 1
                common.console.print(f"[red]corrupt:[/] {exc}", highlight=False)
            if bad:
                common.fail(f"{bad} corrupt sample(s) in {path}")
            common.console.print(f"verified {index.num_samples} samples: all readable")
        return
    try:
        df = read_manifest(path)
    except ManifestError as exc:
        common.fail(str(exc), common.EXIT_USAGE)
    table = Table(title=f"{path}: {len(df)} clips, {df['subject'].nunique()} subjects")
    table.add_column("status")
    table.add_column("clips", justify="right")
    for status, n in df["status"].value_counts().items():
        table.add_row(str(status), str(n))
    common.console.print(table)
    ok = df[df["status"] == "ok"]
    if len(ok):
        if (ok["label"] >= 0).any():
            labels = ok.groupby(["label", "label_name"], dropna=False).size()
            common.console.print("labels (usable clips):\n" + labels.to_string())
        if (ok["test_fold"] >= 1).any():
            common.console.print("test folds:\n" + ok["test_fold"].value_counts().sort_index().to_string())
        common.console.print(
            f"duration {ok['duration_s'].sum() / 3600:.2f} h, median {ok['duration_s'].median():.2f} s; "
            f"coverage median {ok['face_coverage'].median():.2f}; audio {ok['audio_status'].value_counts().to_dict()}",
            highlight=False,
        )
