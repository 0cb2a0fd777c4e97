"""The driver side of the three training stages (what ``avf train ...`` runs for DVC).

Each stage: resolve its inputs from ``params.yaml`` (datasets by role, folds, validation subjects),
open an MLflow run, run the worker loop through Ray Train (or in-process), then export the DVC output
atomically: ``model.safetensors`` + ``card.json`` in the stage's out folder, and metrics / curves under
the stage's report folder.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import shutil
from pathlib import Path
from typing import Any

from avf.artifacts.cards import export_model, read_card
from avf.artifacts.weights import load_weights, save_weights
from avf.config import Params, section_hash
from avf.config.stages import stage_params
from avf.data.splits import DatasetSplits, dataset_splits
from avf.models.multihead import split_multihead
from avf.utils.io import atomic_path, write_json

log = logging.getLogger(__name__)


def datasets_with_role(params: Params, role: str) -> list[str]:
    return [d.name for d in params.data.specs if role in d.roles]


PACKAGE_ROOT = Path(__file__).resolve().parents[1]


@functools.cache
def code_digest(root: Path = PACKAGE_ROOT) -> str:
    """Content hash of the ``avf`` package's Python sources (relative paths and bytes)."""
    h = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        h.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def _run_name(params: Params, stage: str, inputs: list[Path]) -> str:
    """Run name (checkpoint folder): same params, inputs and code -> same name, so an interrupted stage
    resumes its run. A code change starts a new run: a stage that DVC re-runs because ``avf/`` changed never
    picks up the finished checkpoint of the old code."""
    from avf.utils.seed import derive_seed

    digest = section_hash(params, *stage_params(stage))
    stamps = [str(p.stat().st_mtime_ns) for p in inputs if p.exists()]
    return f"{stage}-{digest}-{derive_seed(params.seed, code_digest(), *stamps) % 10**8:08d}"


def _base_config(params: Params, stage: str, run: Any) -> dict[str, Any]:
    from avf import tracking

    return {
        "stage": stage,
        "params": params.model_dump(mode="json"),
        "mlflow_run_id": getattr(run, "run_id", None),
        "tracking_uri": tracking.current_uri(),
        "threads_per_worker": max(1, int(params.ray.cpus_per_worker)) if params.ray.num_workers else None,
    }


def _execute(
    params: Params, stage: str, config: dict[str, Any], inputs: list[Path], storage: Path, run: Any
) -> tuple[Path, dict, Path]:
    """Train (or resume) the stage's run and tag its MLflow ``run`` with the precision it trained in;
    returns its newest checkpoint, loop state and run folder."""
    from avf.train import launch

    name = _run_name(params, stage, inputs)
    # where it resumes from, exactly, is the training loop's line in the stage log (Ray workers log there)
    resuming = ", resuming from its checkpoints" if any((storage / name).glob("checkpoint_*")) else ""
    log.info(
        "%s: run %s (%s)%s",
        stage,
        name,
        "in-process" if params.ray.num_workers == 0 else f"{params.ray.num_workers} Ray workers",
        resuming,
    )
    decode_tasks = params.data.ingest_tasks if params.data.ingest == "ray" else 0
    result = launch.run(config, params.ray, name, storage, decode_tasks)
    state = json.loads((result.checkpoint / "state.json").read_text())["loop"]
    run.set_tags({"avf.precision": state["precision"]})  # amp: auto depends on the machine
    return result.checkpoint, state, storage / name


def _drop_finished_run(run_dir: Path) -> None:
    """Delete a run's checkpoints once its stage output is written: they only serve to resume an interrupted
    run, and every new params/code version starts its own (2 checkpoints of base with its optimizer: ~4 GB)."""
    shutil.rmtree(run_dir, ignore_errors=True)
    log.debug("removed the finished run's checkpoints %s (the stage output holds the result)", run_dir)


def _write_reports(report_dir: Path, state: dict[str, Any], summary: dict[str, Any]) -> None:
    """metrics.json (DVC metrics), curve.csv and epochs.csv (DVC plots)."""
    import pandas as pd

    report_dir.mkdir(parents=True, exist_ok=True)
    write_json(report_dir / "metrics.json", summary)
    with atomic_path(report_dir / "curve.csv") as tmp:
        pd.DataFrame(state.get("curve", []) or [{"step": 0}]).to_csv(tmp, index=False)
    with atomic_path(report_dir / "epochs.csv") as tmp:
        pd.DataFrame(state.get("history", []) or [{"epoch": 0}]).to_csv(tmp, index=False)


def run_pretrain(params: Params, shard_root: Path, out: Path, report_dir: Path, storage: Path) -> dict[str, Any]:
    """Stage 1: self-supervised audio-visual masked autoencoding on the ``pretrain``-role datasets."""
    from avf import tracking
    from avf.data.shards import ShardIndex

    names = datasets_with_role(params, "pretrain")
    if not names:
        raise ValueError("no dataset has the 'pretrain' role in params.yaml data.datasets")
    shard_dirs = [shard_root / n for n in names]
    num = sum(ShardIndex.load(d).num_samples for d in shard_dirs)
    with tracking.stage_run(params, stage="pretrain", sections=stage_params("pretrain")) as run:
        for d in shard_dirs:
            run.log_dataset(d.name, str(d), _dir_digest(d))
        config = {
            **_base_config(params, "pretrain", run),
            "shard_dirs": [str(d.resolve()) for d in shard_dirs],
            "num_samples": num,
        }
        ckpt, state, run_dir = _execute(
            params, "pretrain", config, [d / "index.json" for d in shard_dirs], storage, run
        )
        last = state["curve"][-1] if state.get("curve") else {}
        summary = {
            "stage": "pretrain",
            "steps": state["step"],
            "epochs": state["epoch"],
            "clips": num,
            **{k.replace("train/", "final_"): v for k, v in last.items() if k.startswith("train/loss")},
        }
        card = {
            "stage": "pretrain",
            "kind": "pretrain",
            "model": params.model.model_dump(),
            "datasets": names,
            "precision": state["precision"],
            "metrics": summary,
            "mlflow_run_id": run.run_id,
            "params_hash": section_hash(params, *stage_params("pretrain")),
        }
        with atomic_path(out) as tmp:
            export_model(tmp, load_weights(ckpt / "model.safetensors"), card)
        _write_reports(report_dir, state, summary)
        _pretrain_picture(params, out, shard_dirs, report_dir, run)
        run.log_metrics(
            {f"final/{k}": v for k, v in summary.items() if isinstance(v, (int, float))}, step=state["step"]
        )
        tracking.write_run_file(report_dir / "mlflow_run.json", run)
    _drop_finished_run(run_dir)
    return summary


def _pretrain_picture(params: Params, model_dir: Path, shard_dirs: list[Path], report_dir: Path, run: Any) -> None:
    """Reconstruction figure (input / masked / reconstruction) of a few pretraining clips."""
    import torch

    from avf.data.loader import pretrain_stream
    from avf.data.transforms import to_model_input
    from avf.eval.plots import reconstruction_png
    from avf.models.factory import pretrain_model
    from avf.models.masking import sample_masks
    from avf.models.viz import reconstruct

    d = params.data
    stream = pretrain_stream(
        shard_dirs,
        clip=d.clip,
        audio=d.audio,
        augment=d.augment,
        seed=params.seed,
        rank=0,
        world_size=1,
        samples_per_epoch=2,
    )
    batch = next(iter(torch.utils.data.DataLoader(stream, batch_size=2)))
    video = to_model_input(batch["video"])
    model = pretrain_model(params.model, params.pretrain, params.masking, training=False)
    model.load_state_dict(load_weights(model_dir / "model.safetensors"))
    model.eval()
    masks = sample_masks(2, params.masking, torch.Generator().manual_seed(params.seed))
    with torch.no_grad():
        out = model(video, batch["audio"], masks)
    path = report_dir / "reconstruction.png"
    reconstruction_png(reconstruct(video, batch["audio"], masks, out), path)
    run.log_artifact(str(path), "plots")


def _file_digest(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else "missing"


def _dir_digest(path: Path) -> str:
    """A shard folder's digest: the start of its ``index.json`` hash."""
    return _file_digest(path / "index.json")[:16]


def _init_weights_file(
    params: Params, stage: str, pretrain_dir: Path | None, intermediate_dir: Path | None
) -> Path | None:
    """Which stage output initialises ``stage`` (finetune.init_from; ``auto`` follows the stage chain)."""
    if stage == "intermediate":
        return pretrain_dir / "model.safetensors" if pretrain_dir else None
    choice = params.finetune.init_from
    if choice == "scratch":
        return None
    if choice == "auto":
        if intermediate_dir is not None and not read_card(intermediate_dir).get("skipped"):
            return intermediate_dir / "model.safetensors"
        return pretrain_dir / "model.safetensors" if pretrain_dir else None
    src = intermediate_dir if choice == "intermediate" else pretrain_dir
    if src is None:
        raise ValueError(f"finetune.init_from={choice} but no {choice} model folder was given")
    if choice == "intermediate" and read_card(src).get("skipped"):
        raise ValueError("finetune.init_from=intermediate but stage 2 was skipped (intermediate.enabled=false)")
    return src / "model.safetensors"


def run_supervised(
    params: Params,
    stage: str,
    manifest_dir: Path,
    shard_root: Path,
    out: Path,
    report_dir: Path,
    storage: Path,
    pretrain_dir: Path | None,
    intermediate_dir: Path | None,
) -> dict[str, Any]:
    """Stage 2 (``intermediate``) or stage 3 (``finetune``)."""
    from avf import tracking

    if stage == "intermediate" and not params.intermediate.enabled:
        return _skip_intermediate(params, pretrain_dir, out, report_dir)
    role = "intermediate" if stage == "intermediate" else "target"
    names = datasets_with_role(params, "intermediate") if stage == "intermediate" else [params.data.target]
    if not names:
        raise ValueError("intermediate.enabled is true but no dataset has the 'intermediate' role")
    splits = [dataset_splits(params, n, manifest_dir, shard_root, role) for n in names]
    init = _init_weights_file(params, stage, pretrain_dir, intermediate_dir)
    dataset = None if stage == "intermediate" else params.data.target
    with tracking.stage_run(params, stage=stage, sections=stage_params(stage), dataset=dataset) as run:
        for s in splits:
            run.log_dataset(s.name, str(s.shard_dir), _dir_digest(s.shard_dir))
            manifest = manifest_dir / f"{s.name}.parquet"  # the manifest hash: which clips, labels and folds
            digest = _file_digest(manifest)
            run.log_dataset(f"{s.name}-manifest", str(manifest), digest, context="manifest")
            run.set_tags({f"avf.manifest_sha256.{s.name}": digest})
        run.set_tags({"avf.init_from": str(init.parent.name) if init else "scratch"})
        config = {
            **_base_config(params, stage, run),
            "init_weights": str(init.resolve()) if init else None,
            "datasets": [{**s.__dict__, "shard_dir": str(s.shard_dir.resolve())} for s in splits],
        }
        inputs = [s.shard_dir / "index.json" for s in splits] + [manifest_dir / f"{n}.parquet" for n in names]
        inputs += [init] if init else []
        ckpt, state, run_dir = _execute(params, stage, config, inputs, storage, run)
        summary = _selection_summary(stage, state, splits)
        # the selection's weights, else the last epoch's: the EMA's when the run keeps one (what was evaluated)
        kept = [ckpt / n for n in ("selected.safetensors", "ema.safetensors", "model.safetensors")]
        weights = load_weights(next(p for p in kept if p.exists()))
        card = {
            "stage": stage,
            "kind": "multihead" if stage == "intermediate" else "finetune",
            "model": params.model.model_dump(),
            "init_from": str(init) if init else None,
            "datasets": {
                s.name: {
                    "task": s.task,
                    "num_outputs": s.num_outputs,
                    "classes": list(s.class_names),
                    "targets": list(s.target_names),
                    "test": len(s.test_keys),
                    "val": len(s.val_keys),
                    "train": len(s.train_keys),
                }
                for s in splits
            },
            "fold": params.data.split.fold if stage == "finetune" else None,
            "precision": state["precision"],
            "metrics": summary,
            "mlflow_run_id": run.run_id,
            "params_hash": section_hash(params, *stage_params(stage)),
            # what `avf predict` must do to a raw video (older cards without it fall back to params.yaml)
            "preprocessing": {k: getattr(params.data, k).model_dump(mode="json") for k in ("face", "clip", "audio")},
        }
        with atomic_path(out) as tmp:
            if stage == "intermediate":  # the backbone in the fine-tuning layout, the heads beside it
                backbone, heads = split_multihead(weights)
                export_model(tmp, backbone, card)
                save_weights(tmp / "heads.safetensors", heads)
            else:
                export_model(tmp, weights, card)
        _write_reports(report_dir, state, summary)
        run.log_metrics(
            {f"final/{k}": v for k, v in summary.items() if isinstance(v, (int, float))}, step=state["step"]
        )
        tracking.write_run_file(report_dir / "mlflow_run.json", run)
    _drop_finished_run(run_dir)
    return summary


def _selection_summary(stage: str, state: dict[str, Any], splits: list[DatasetSplits]) -> dict[str, Any]:
    """Honest model selection: the exported weights' metrics (by the ``select`` rule, on validation data),
    the last epoch's, and, labelled apart, the official protocol's test-selected epoch."""
    history = state.get("history", [])
    if not history:
        return {"stage": stage, "epochs": 0}
    last = history[-1]
    selected = state["selected"]
    out: dict[str, Any] = {
        "stage": stage,
        "epochs": len(history),
        "steps": state["step"],
        "select": selected["rule"],
        "selected_epoch": selected["epochs"][-1],
        "selected_epochs": len(selected["epochs"]),
    }
    for k, v in last.items():
        if k.startswith(("test/", "val/")):
            out[f"last/{k}"] = v
    for k, v in selected["metrics"].items():
        if k.startswith(("test/", "val/")):
            out[f"selected/{k}"] = v
    task = splits[0].task
    key = "test/ccc" if task == "regression" else "test/uar"
    if any(key in h for h in history):  # the official protocol's number (selected on the test set!)
        top = max((h for h in history if key in h), key=lambda h: h[key])
        out[f"official_test_selected/{key}"] = top[key]
        out["official_test_selected/epoch"] = top["epoch"]
    return out


def _skip_intermediate(params: Params, pretrain_dir: Path | None, out: Path, report_dir: Path) -> dict[str, Any]:
    """Stage 2 switched off (an ablation): the output passes the stage-1 weights through unchanged."""
    summary = {"stage": "intermediate", "skipped": True}
    with atomic_path(out) as tmp:
        tmp.mkdir()
        if pretrain_dir is not None:
            shutil.copy2(pretrain_dir / "model.safetensors", tmp / "model.safetensors")
        write_json(
            tmp / "card.json",
            {
                "stage": "intermediate",
                "skipped": True,
                "model": params.model.model_dump(),
                "init_from": str(pretrain_dir) if pretrain_dir else None,
            },
        )
    report_dir.mkdir(parents=True, exist_ok=True)
    _write_reports(report_dir, {}, summary)
    write_json(report_dir / "mlflow_run.json", {"skipped": True})
    return summary
