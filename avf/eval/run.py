"""The ``evaluate`` stage: test a fine-tuned model on its fold with the test-time views.

Writes ``metrics.json`` (DVC metrics: the validation-selected model's test metrics, plus, clearly
labelled, the last-epoch and the official protocol's test-selected numbers from training),
``predictions.csv`` (per clip; DVC confusion plot), ``confusion.png`` and ``per_class.csv``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from avf.artifacts.cards import model_from_card
from avf.config import Params
from avf.config.stages import stage_params
from avf.eval.metrics import confusion
from avf.eval.plots import confusion_png
from avf.eval.predict import predict_views, score
from avf.utils.device import resolve_device
from avf.utils.io import atomic_path, write_json

log = logging.getLogger(__name__)


def is_wanted(name: str, wanted: tuple[str, ...]) -> bool:
    """Whether ``eval.metrics`` (``wanted``) names metric ``name``; ``pcc``/``ccc`` also cover ``pcc_<target>``."""
    return name in wanted or (name.split("_")[0] in ("pcc", "ccc") and name[:3] in wanted)


def select_metrics(metrics: dict[str, float], wanted: tuple[str, ...]) -> dict[str, float]:
    """The entries of ``metrics`` that ``eval.metrics`` names (see :func:`is_wanted`)."""
    return {k: v for k, v in metrics.items() if is_wanted(k, wanted)}


def evaluate(params: Params, model_dir: Path, manifest_dir: Path, shard_root: Path, out_dir: Path) -> dict[str, Any]:
    from avf.data.loader import ClipDataset
    from avf.data.splits import dataset_splits

    model, card = model_from_card(model_dir)
    ((name, _info),) = card["datasets"].items()
    splits = dataset_splits(params, name, manifest_dir, shard_root, "target")
    if card.get("fold") != params.data.split.fold:
        raise ValueError(f"{model_dir} was trained on fold {card.get('fold')}, params say {params.data.split.fold}")
    d = params.data
    test = ClipDataset(
        splits.shard_dir, splits.test_keys, train=False, clip=d.clip, audio=d.audio, augment=d.augment, seed=params.seed
    )
    device = resolve_device(params.eval.device)
    outputs = predict_views(
        model.to(device), test, range(len(test)), device, batch_size=8, regression=splits.task == "regression"
    )
    metrics = score(outputs, splits.task, splits.num_outputs, splits.target_names)
    out_dir.mkdir(parents=True, exist_ok=True)
    train_metrics = card.get("metrics", {})
    result: dict[str, Any] = {
        "dataset": name,
        "fold": params.data.split.fold,
        "clips": len(test),
        "views": d.clip.test_views,
        **{f"test/{k}": v for k, v in select_metrics(metrics, params.eval.metrics).items()},
    }
    prefixes = ("last/test/", "official_test_selected/") if params.eval.report_test_selected else ("last/test/",)
    for k, v in train_metrics.items():  # for comparability; never used for selection here
        if k.startswith(prefixes) and is_wanted(k.split("/")[-1], params.eval.metrics):
            result[k] = v
    keys = outputs["keys"]
    if splits.task == "classification":
        names = list(splits.class_names)
        pred = outputs["scores"].argmax(-1)
        cm = confusion(outputs["labels"], pred, splits.num_outputs)
        confusion_png(
            cm,
            names,
            out_dir / "confusion.png",
            title=f"{name} fold {params.data.split.fold}: UAR {metrics['uar']:.1f} WAR {metrics['war']:.1f}",
        )
        table = pd.DataFrame(
            {
                "key": keys,
                "actual": [names[i] for i in outputs["labels"]],
                "predicted": [names[i] for i in pred],
                "confidence": outputs["scores"].max(-1),
            }
        )
        recall = np.diag(cm) / np.maximum(cm.sum(1), 1)
        per_class = pd.DataFrame({"class": names, "support": cm.sum(1), "recall": recall})
        with atomic_path(out_dir / "per_class.csv") as tmp:
            per_class.to_csv(tmp, index=False)
    else:
        table = pd.DataFrame({"key": keys})
        for j, t in enumerate(splits.target_names):
            table[f"true_{t}"] = outputs["labels"][:, j]
            table[f"pred_{t}"] = outputs["scores"][:, j]
    with atomic_path(out_dir / "predictions.csv") as tmp:
        table.to_csv(tmp, index=False)
    write_json(out_dir / "metrics.json", result)
    _track(params, name, model_dir, out_dir, result, card)
    return result


def _track(
    params: Params, dataset: str, model_dir: Path, out_dir: Path, result: dict[str, Any], card: dict[str, Any]
) -> None:
    """One MLflow run for the evaluation: metrics, the pictures and tables, a link to the training run."""
    from avf import tracking

    with tracking.stage_run(params, stage="evaluate", sections=stage_params("evaluate"), dataset=dataset) as run:
        run.set_tags({"avf.model_dir": str(model_dir), "avf.train_run_id": str(card.get("mlflow_run_id"))})
        run.log_metrics({k: v for k, v in result.items() if isinstance(v, (int, float)) and "/" in k}, step=0)
        for name in ("confusion.png", "predictions.csv", "per_class.csv", "metrics.json"):
            if (out_dir / name).exists():
                run.log_artifact(str(out_dir / name), "eval")
        tracking.write_run_file(out_dir / "mlflow_run.json", run)
