"""The ``register`` stage: serve a fine-tuned model from the MLflow registry.

The fine-tuning stage writes ``models/finetune`` and its MLflow run; this stage logs that folder as the
served video model (:mod:`avf.predict.serving`) under the same run, registers it as a new version of
``tracking.registered_model`` with the evaluation metrics as version tags, and points an alias
(``candidate``) at it. ``avf registry promote`` later compares candidates to ``@champion``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from avf.config import Params
from avf.utils.nested import flatten_numbers

__all__ = ["Registration", "register_model"]


@dataclass(frozen=True)
class Registration:
    """A registered model version (written as ``--out`` JSON)."""

    name: str
    version: int
    alias: str | None
    model_uri: str
    tracking_uri: str


def _require(path: Path, what: str) -> None:
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}")


def _log_served(params: Params, model_dir: Path, run_info: Mapping[str, Any]) -> str:
    """Log ``model_dir`` as the served video model into the run of ``run_info``; its ``models:/`` URI."""
    from avf import tracking
    from avf.predict.serving import log_video_model

    if not (model_dir / "card.json").is_file():
        raise FileNotFoundError(f"{model_dir}: no fine-tuned model here (card.json + model.safetensors)")
    with tracking.attach(str(run_info["run_id"]), run_info.get("tracking_uri"), stage="register") as run:
        uri = log_video_model(run, model_dir, params.predict.model_dump(mode="json"))
    if uri is None:
        raise tracking.TrackingUnavailableError(f"could not log {model_dir} to MLflow (store unreachable)")
    return uri


def register_model(
    params: Params,
    *,
    model_uri: str | None = None,
    run_file: Path | None = None,
    model_dir: Path | None = None,
    metrics_file: Path | None = None,
    name: str | None = None,
    alias: str | None = "candidate",
    tags: Mapping[str, str] | None = None,
    out: Path | None = None,
) -> Registration:
    """Register a model version and point ``alias`` at it.

    The model is ``model_uri``, or ``model_dir`` logged as the served video model under the run of
    ``run_file`` (the DVC stage), or the model that run already logged. ``metrics_file`` numbers become
    version tags (``test/uar``), next to ``avf.source_run_id`` and ``avf.ablation``.

    Raises:
        FileNotFoundError: a named file or folder is missing.
        LookupError: the run file's run logged no model and no ``model_dir`` was given.
        ValueError: nothing names a model, or a file is malformed.
        avf.tracking.TrackingUnavailableError: the tracking store is unreachable.
    """
    from avf import tracking
    from avf.utils.io import write_json

    tracking.configure(params)
    version_tags: dict[str, str] = {}
    if run_file is not None:
        _require(run_file, "run file")
        info = tracking.read_run_file(run_file)
        version_tags["avf.source_run_id"] = str(info["run_id"])
        if model_uri is None and model_dir is not None:
            model_uri = _log_served(params, model_dir, info)
        elif model_uri is None:
            if not info.get("model_uri"):
                raise LookupError(f"{run_file} has no model_uri (did the stage log a model? or give the model folder)")
            model_uri = str(info["model_uri"])
    elif model_dir is not None:
        raise ValueError("a model folder is logged under its stage's run: give the run file too")
    if not model_uri:
        raise ValueError("give a model URI or a run file")
    if metrics_file is not None:
        _require(metrics_file, "metrics file")
        metrics = flatten_numbers(json.loads(metrics_file.read_text()), sep="/")
        version_tags.update({k: repr(v) for k, v in metrics.items()})
    version_tags["avf.ablation"] = params.ablation.name
    version_tags.update(tags or {})
    model_name = name or params.tracking.registered_model
    version = tracking.register(model_uri, model_name, version_tags, alias=alias or None)
    result = Registration(model_name, int(version), alias or None, model_uri, tracking.current_uri())
    if out is not None:
        write_json(out, asdict(result))
    return result
