"""Where a model comes from: every URI ``avf predict --model`` accepts, resolved to weights + a spec.

Accepted sources (:func:`load_model`):

- a stage output folder (``models/finetune``: ``model.safetensors`` + ``card.json``);
- a ``.safetensors`` file: with ``card.json`` next to it, an explicit ``card``, or an official
  checkpoint imported by ``avf model import-official`` (its file metadata gives size and classes);
- an official checkpoint file (``.pth``/``.pt``/``.bin``/``.ckpt``) of XuecWu/AVF-MAE;
- an exported package folder (``avf export``: ``config.json`` + ``model.safetensors`` + assets);
- an MLflow URI (``models:/NAME@alias``, ``models:/NAME/3``, ``models:/m-<id>``, ``runs:/<id>/model``):
  the logged model is downloaded (``avf.tracking.download_model``) and its ``model_dir`` artifact is used.

The spec carries the training preprocessing (``data.face``, ``data.clip``, ``data.audio``) from the
card's ``preprocessing`` entry; an older card without it, or a bare checkpoint, falls back to the
params-file values given as ``data`` (the defaults when none).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from torch import nn

from avf.config.data import AudioConfig, ClipConfig, DataConfig, FaceConfig
from avf.predict.heads import DatasetHead, check_head_names

__all__ = [
    "PACKAGE_CONFIG",
    "PACKAGE_FORMAT",
    "ModelSpec",
    "load_model",
]

log = logging.getLogger(__name__)

PACKAGE_CONFIG = "config.json"
PACKAGE_FORMAT = "avf-model-package"
OFFICIAL_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt")
Task = Literal["classification", "regression"]
Format = Literal["stage", "safetensors", "official", "package"]


@dataclass(frozen=True)
class ModelSpec:
    """What a loaded model predicts and the preprocessing it was trained with."""

    source: str  # the URI it was loaded from
    format: Format
    size: str  # tiny | base | large | huge
    task: Task
    outputs: tuple[str, ...]  # class names (classification) or target names (regression)
    face: FaceConfig
    clip: ClipConfig
    audio: AudioConfig
    dataset: str | None = None
    architecture: dict[str, Any] = field(default_factory=dict)  # size, lg_fourth_attn, iavcl
    provenance: dict[str, Any] = field(default_factory=dict)  # fold, metrics, mlflow_run_id (from the card)
    preprocessing_from: Literal["card", "defaults"] = "card"
    base_dir: str | None = None  # folder of the model files (relative assets resolve here first)

    @property
    def num_outputs(self) -> int:
        return len(self.outputs)

    def preprocessing(self) -> dict[str, dict[str, Any]]:
        """``{"face": ..., "clip": ..., "audio": ...}`` as JSON-ready dicts (the card's ``preprocessing``)."""
        return {
            "face": self.face.model_dump(mode="json"),
            "clip": self.clip.model_dump(mode="json"),
            "audio": self.audio.model_dump(mode="json"),
        }


def _read_json(path: str | Path) -> dict[str, Any]:
    data = json.loads(Path(path).read_text())
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object")
    return data


def _preprocessing(
    pre: dict[str, Any] | None, data: DataConfig
) -> tuple[FaceConfig, ClipConfig, AudioConfig, Literal["card", "defaults"]]:
    if not pre:
        return data.face, data.clip, data.audio, "defaults"
    face = FaceConfig.model_validate(pre["face"]) if "face" in pre else data.face
    clip = ClipConfig.model_validate(pre["clip"]) if "clip" in pre else data.clip
    audio = AudioConfig.model_validate(pre["audio"]) if "audio" in pre else data.audio
    return face, clip, audio, "card"


def _head(card: dict[str, Any], where: str) -> tuple[str | None, Task, tuple[str, ...], int]:
    """(dataset, task, output names, num_outputs) from a card's single ``datasets`` entry."""
    datasets = card.get("datasets")
    if not isinstance(datasets, dict) or len(datasets) != 1:
        raise ValueError(f"{where}: the card must name exactly one dataset under 'datasets' (a fine-tuned model)")
    ((name, ds),) = datasets.items()
    task: Task = "regression" if ds.get("task") == "regression" else "classification"
    n = int(ds["num_outputs"])
    names = tuple((ds.get("targets") if task == "regression" else ds.get("classes")) or [])
    if len(names) != n:
        names = _generic_names(task, n)
    return name, task, names, n


def _generic_names(task: Task, n: int) -> tuple[str, ...]:
    """``class_0 ...`` (or ``target_0 ...``): the names of a head nothing describes."""
    prefix = "target" if task == "regression" else "class"
    return tuple(f"{prefix}_{i}" for i in range(n))


def _spec_from_card(
    card: dict[str, Any], source: str, fmt: Format, data: DataConfig, base_dir: Path | None
) -> ModelSpec:
    if card.get("kind") not in (None, "finetune"):
        raise ValueError(f"{source}: expected a fine-tuned model, its card says kind={card.get('kind')!r}")
    dataset, task, names, _ = _head(card, source)
    face, clip, audio, origin = _preprocessing(card.get("preprocessing"), data)
    arch = dict(card.get("model") or {})
    return ModelSpec(
        source=source,
        format=fmt,
        size=str(arch.get("size", "tiny")),
        task=task,
        outputs=names,
        face=face,
        clip=clip,
        audio=audio,
        dataset=dataset,
        architecture={k: arch[k] for k in ("size", "lg_fourth_attn", "iavcl") if k in arch},
        provenance={k: card[k] for k in ("fold", "metrics", "mlflow_run_id", "stage") if k in card},
        preprocessing_from=origin,
        base_dir=str(base_dir) if base_dir is not None else None,
    )


def _load_stage_dir(path: Path, source: str, data: DataConfig) -> tuple[nn.Module, ModelSpec]:
    from avf.artifacts.cards import model_from_card

    model, card = model_from_card(path)
    return model, _spec_from_card(card, source, "stage", data, path)


def _load_package(path: Path, source: str, data: DataConfig) -> tuple[nn.Module, ModelSpec]:
    from avf.artifacts.cards import finetune_from_weights
    from avf.artifacts.weights import load_weights

    cfg = _read_json(path / PACKAGE_CONFIG)
    if cfg.get("format") != PACKAGE_FORMAT:
        raise ValueError(f"{path / PACKAGE_CONFIG}: not an avf model package (format {cfg.get('format')!r})")
    card = {
        **(cfg.get("provenance") or {}),
        "kind": "finetune",
        "model": cfg["model"],
        "datasets": {
            cfg.get("dataset") or "model": {
                "task": cfg["task"],
                "num_outputs": cfg["model"]["num_outputs"],
                "classes": cfg.get("classes", []),
                "targets": cfg.get("targets", []),
            }
        },
        "preprocessing": cfg.get("preprocessing"),
    }
    spec = _replace(_spec_from_card(card, source, "package", data, path), dataset=cfg.get("dataset"))
    weights = load_weights(path / cfg.get("files", {}).get("weights", "model.safetensors"))
    return finetune_from_weights(spec.architecture, spec.num_outputs, weights), spec


def _replace(spec: ModelSpec, **changes: Any) -> ModelSpec:
    from dataclasses import replace

    return replace(spec, **changes)


def _generic_spec(
    source: str, fmt: Format, size: str, num_outputs: int, data: DataConfig, card: dict[str, Any] | None
) -> ModelSpec:
    """Spec of a checkpoint without a card: ``class_i`` names unless ``card`` gives the head."""
    if card is not None:
        spec = _spec_from_card({**card, "model": {"size": size, **(card.get("model") or {})}}, source, fmt, data, None)
        if spec.num_outputs != num_outputs:
            raise ValueError(f"{source}: the card lists {spec.num_outputs} outputs but the head has {num_outputs}")
        return spec
    return ModelSpec(
        source=source,
        format=fmt,
        size=size,
        task="classification",
        outputs=_generic_names("classification", num_outputs),
        face=data.face,
        clip=data.clip,
        audio=data.audio,
        architecture={"size": size},
        preprocessing_from="defaults",
    )


def _load_safetensors(
    path: Path, source: str, card: dict[str, Any] | None, data: DataConfig
) -> tuple[nn.Module, ModelSpec]:
    from safetensors import safe_open

    from avf.artifacts.cards import finetune_from_weights
    from avf.artifacts.weights import load_weights

    if card is None and (path.parent / "card.json").is_file():
        card = _read_json(path.parent / "card.json")
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
    if meta.get("format") == "avf" and "model" in meta:  # written by `avf model import-official`
        from avf.artifacts.official import load_converted

        if meta.get("kind") != "finetune":
            raise ValueError(f"{path}: an imported {meta.get('kind')} checkpoint; prediction needs a fine-tuned one")
        model = load_converted(path, drop_path=0.0).eval()
        num = int(meta["num_classes"])
        return model, _generic_spec(source, "official", meta["size"], num, data, card or _card_from_import(meta))
    if card is None:
        raise ValueError(f"{path}: no card.json next to it; pass the card (dataset head, model size) explicitly")
    spec = _spec_from_card(card, source, "safetensors", data, path.parent)
    return finetune_from_weights(spec.architecture, spec.num_outputs, load_weights(path)), spec


def _card_from_import(meta: dict[str, str]) -> dict[str, Any] | None:
    """The head an ``avf model import-official --dataset/--classes`` recorded in the file metadata."""
    if "outputs" not in meta:
        return None
    names = json.loads(meta["outputs"])
    task = meta.get("task", "classification")
    key = "targets" if task == "regression" else "classes"
    return {"datasets": {meta.get("dataset") or "model": {"task": task, "num_outputs": len(names), key: names}}}


def _load_official(
    path: Path, source: str, card: dict[str, Any] | None, data: DataConfig
) -> tuple[nn.Module, ModelSpec]:
    from avf.artifacts.official import load_official, read_checkpoint
    from avf.models import strip_prefixes
    from avf.models.official import detect_kind, detect_size

    sd = strip_prefixes(read_checkpoint(path))
    if detect_kind(sd) != "finetune":
        raise ValueError(f"{path}: an official pretraining checkpoint; prediction needs a fine-tuned one")
    model = load_official(path, drop_path=0.0)
    num = int(sd["head.weight"].shape[0]) if "head.weight" in sd else 0
    return model, _generic_spec(source, "official", detect_size(sd), num, data, card)


def _is_remote(uri: str) -> bool:
    return uri.startswith(("models:/", "runs:/", "mlflow-artifacts:/"))


def load_model(
    uri: str | Path,
    *,
    card: dict[str, Any] | str | Path | None = None,
    data: DataConfig | None = None,
    head: DatasetHead | None = None,
) -> tuple[nn.Module, ModelSpec]:
    """The model at ``uri`` (eval mode, CPU) and its :class:`ModelSpec` (see the module docstring).

    ``card`` (a card dict or a ``card.json`` path) describes a checkpoint that has none; ``data``
    supplies the preprocessing a card does not record. ``head`` (a dataset adapter's, from
    :func:`avf.predict.heads.dataset_head`) names the outputs of a head that has only ``class_i`` names
    and is checked against a named head's order. Raises ``FileNotFoundError`` / ``ValueError``.
    """
    data = data or DataConfig()
    card_dict = _read_json(card) if isinstance(card, (str, Path)) else card
    source = str(uri)
    if _is_remote(source):
        from avf import tracking

        model, spec = _load_local(tracking.download_model(source), card_dict, data)
        spec = _replace(spec, source=source)
    else:
        model, spec = _load_local(Path(source), card_dict, data)
    return model, spec if head is None else _named_by_head(spec, head)


def _named_by_head(spec: ModelSpec, head: DatasetHead) -> ModelSpec:
    if spec.outputs == _generic_names(spec.task, spec.num_outputs):  # a bare head: the adapter names it
        if spec.num_outputs != len(head.names):
            check_head_names(spec.outputs, head, spec.source)  # raises: the sizes differ
        return _replace(spec, outputs=head.names, task=head.task, dataset=head.dataset)
    check_head_names(spec.outputs, head, spec.source)
    return _replace(spec, dataset=head.dataset)


def _mlflow_model_dir(path: Path) -> Path:
    """The ``model_dir`` artifact of a downloaded MLflow model logged by ``avf.predict.serving.log_video_model``."""
    import yaml

    meta = yaml.safe_load((path / "MLmodel").read_text()) or {}
    artifacts = (meta.get("flavors", {}).get("python_function", {}) or {}).get("artifacts") or {}
    rel = (artifacts.get("model_dir") or {}).get("path")
    if not rel or not (path / rel).is_dir():
        raise ValueError(f"{path}: an MLflow model without a 'model_dir' artifact (not logged by avf)")
    return path / rel


def _load_local(path: Path, card: dict[str, Any] | None, data: DataConfig) -> tuple[nn.Module, ModelSpec]:
    source = str(path)
    if path.is_dir():
        if (path / PACKAGE_CONFIG).is_file():
            return _load_package(path, source, data)
        if (path / "card.json").is_file() and (path / "model.safetensors").is_file():
            return _load_stage_dir(path, source, data)
        if (path / "MLmodel").is_file():  # a downloaded MLflow model: the stage folder is its artifact
            return _load_local(_mlflow_model_dir(path), card, data)
        raise FileNotFoundError(f"{path}: no model here (expected card.json + model.safetensors, or {PACKAGE_CONFIG})")
    if not path.is_file():
        raise FileNotFoundError(f"model not found: {path}")
    if path.suffix == ".safetensors":
        return _load_safetensors(path, source, card, data)
    if path.suffix in OFFICIAL_SUFFIXES:
        return _load_official(path, source, card, data)
    raise ValueError(f"{path}: unknown model file type (expected .safetensors or an official {OFFICIAL_SUFFIXES})")
