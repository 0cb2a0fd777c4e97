"""Stage outputs: ``model.safetensors`` + ``card.json``, and the model a card describes.

A card records what produced the weights (``stage``, ``kind``: pretrain / multihead / finetune), the
architecture (``model``: the ``model`` section of ``params.yaml``), the datasets with their label spaces,
metrics and lineage. :func:`model_from_card` rebuilds a fine-tuned model through the same factory the
training stage used (``avf.models.factory``), so evaluation and prediction always build what was trained.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from avf.artifacts.weights import load_weights, save_weights
from avf.config.model import ModelConfig
from avf.models import AVFViT
from avf.models.factory import finetune_model
from avf.utils.io import write_json

__all__ = ["export_model", "finetune_from_weights", "model_from_card", "read_card", "single_dataset"]

CARD = "card.json"
WEIGHTS = "model.safetensors"


def export_model(out_dir: str | Path, weights: dict[str, torch.Tensor], card: dict[str, Any]) -> None:
    """Write a stage's DVC output: ``model.safetensors`` + ``card.json`` (stage, model, data, metrics)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    save_weights(out_dir / WEIGHTS, weights, metadata={"format": "pt", "avf.stage": str(card.get("stage"))})
    write_json(out_dir / CARD, card)


def read_card(model_dir: str | Path) -> dict[str, Any]:
    path = Path(model_dir) / CARD
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no model card (is {model_dir} a stage output?)")
    card = json.loads(path.read_text())
    if not isinstance(card, dict):
        raise ValueError(f"{path}: a model card must be a JSON object")
    return card


def single_dataset(card: Mapping[str, Any], where: str) -> tuple[str, dict[str, Any]]:
    """(name, entry) of the one dataset a fine-tuned model's card names."""
    datasets = card.get("datasets")
    if not isinstance(datasets, Mapping) or len(datasets) != 1:
        raise ValueError(f"{where}: the card must name exactly one dataset under 'datasets' (a fine-tuned model)")
    ((name, entry),) = datasets.items()
    return str(name), dict(entry)


def finetune_from_weights(model: Mapping[str, Any], num_outputs: int, weights: dict[str, torch.Tensor]) -> AVFViT:
    """The fine-tuning model of a card's ``model`` entry with ``weights`` (strict), in eval mode.

    Entries of ``model`` that are not ``ModelConfig`` fields (a package's ``num_outputs``) are ignored.
    """
    cfg = ModelConfig.model_validate({k: v for k, v in model.items() if k in ModelConfig.model_fields})
    net = finetune_model(cfg, num_outputs, training=False)
    net.load_state_dict(weights)
    return net.eval()


def model_from_card(model_dir: str | Path) -> tuple[AVFViT, dict[str, Any]]:
    """The stage-3 model of ``model_dir`` (weights + card), in eval mode on the CPU."""
    card = read_card(model_dir)
    if card.get("kind") != "finetune":
        raise ValueError(f"{model_dir}: expected a fine-tuned model, its card says kind={card.get('kind')!r}")
    _, dataset = single_dataset(card, str(model_dir))
    weights = load_weights(Path(model_dir) / WEIGHTS)
    return finetune_from_weights(card["model"], int(dataset["num_outputs"]), weights), card
