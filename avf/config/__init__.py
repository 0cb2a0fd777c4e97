"""Typed, strict ``params.yaml``: the single home of every hyperparameter.

``load_params(path)`` returns a frozen :class:`Params`; an unknown key, a wrong type or an impossible
value raises :class:`ParamsError` naming the file and the dotted key.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, ValidationError

from avf.config.base import Section
from avf.config.data import (
    AudioConfig,
    ClipConfig,
    DataConfig,
    DatasetSpec,
    FaceConfig,
    ShardConfig,
    SplitConfig,
    SynthConfig,
)
from avf.config.infra import AblationConfig, RayConfig, TrackingConfig
from avf.config.model import MaskingConfig, ModelConfig
from avf.config.predict import PredictConfig
from avf.config.train import (
    ContrastiveConfig,
    EvalConfig,
    FinetuneConfig,
    IntermediateConfig,
    OptimConfig,
    PretrainConfig,
)

__all__ = [
    "AblationConfig",
    "AudioConfig",
    "ClipConfig",
    "ContrastiveConfig",
    "DataConfig",
    "DatasetSpec",
    "EvalConfig",
    "FaceConfig",
    "FinetuneConfig",
    "IntermediateConfig",
    "MaskingConfig",
    "ModelConfig",
    "OptimConfig",
    "Params",
    "ParamsError",
    "PretrainConfig",
    "RayConfig",
    "ShardConfig",
    "SplitConfig",
    "SynthConfig",
    "TrackingConfig",
    "load_params",
    "parse_params",
    "section_hash",
    "section_values",
]


class ParamsError(ValueError):
    """``params.yaml`` is missing, unreadable or invalid."""


class Params(Section):
    """The whole ``params.yaml``."""

    seed: int = Field(0, ge=0)
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    masking: MaskingConfig = MaskingConfig()
    pretrain: PretrainConfig = PretrainConfig()
    intermediate: IntermediateConfig = IntermediateConfig()
    finetune: FinetuneConfig = FinetuneConfig()
    eval: EvalConfig = EvalConfig()
    ray: RayConfig = RayConfig()
    tracking: TrackingConfig = TrackingConfig()
    ablation: AblationConfig = AblationConfig()
    predict: PredictConfig = PredictConfig()

    def section(self, dotted: str) -> Any:
        """Return a (nested) section by dotted name, e.g. ``data.face``."""
        obj: Any = self
        for part in dotted.split("."):
            obj = obj[part] if isinstance(obj, dict) else getattr(obj, part)
        return obj


def _format_errors(path: Path | str, err: ValidationError) -> str:
    lines = [f"{path}: invalid parameters ({err.error_count()} problem(s))"]
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"]) or "<root>"
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            msg = "unknown key (typo?)"
        lines.append(f"  - {loc}: {msg}")
    return "\n".join(lines)


def _set_dotted(tree: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = tree
    for p in parts[:-1]:
        node = node.setdefault(p, {})
        if not isinstance(node, dict):
            raise ParamsError(f"override {dotted}: {p!r} is not a section")
    node[parts[-1]] = value


def parse_params(raw: dict[str, Any], source: str = "<params>") -> Params:
    """Validate an already-loaded mapping."""
    try:
        return Params.model_validate(raw)
    except ValidationError as e:
        raise ParamsError(_format_errors(source, e)) from None
    except ValueError as e:  # raised by cross-section validators outside pydantic's wrapping
        raise ParamsError(f"{source}: {e}") from None


def load_params(path: str | Path = "params.yaml", overrides: dict[str, Any] | None = None) -> Params:
    """Read and validate ``params.yaml``; ``overrides`` maps dotted keys to values (for tests/tools)."""
    p = Path(path)
    if not p.is_file():
        raise ParamsError(f"{p}: parameters file not found")
    try:
        raw = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as e:
        raise ParamsError(f"{p}: not valid YAML: {e}") from None
    if not isinstance(raw, dict):
        raise ParamsError(f"{p}: top level must be a mapping, got {type(raw).__name__}")
    for key, value in (overrides or {}).items():
        _set_dotted(raw, key, value)
    return parse_params(raw, str(p))


def _plain(value: Any) -> Any:
    if isinstance(value, Section):
        return value.model_dump(mode="json")
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def section_values(params: Params, dotted: str) -> Any:
    """A section as JSON-ready data (``seed`` -> 0, ``data.datasets`` -> a dict of dicts, ``model`` -> a dict)."""
    return _plain(params.section(dotted))


def section_hash(params: Params, *sections: str) -> str:
    """Stable short hash of the given sections (tags MLflow runs with what a stage actually used)."""
    payload = {s: section_values(params, s) for s in sections}
    blob = json.dumps(payload, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:12]
