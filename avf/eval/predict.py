"""Test-time view averaging and scoring of clip datasets.

Each clip yields ``V`` temporal views (``video u8[V,T,S,S,3]``, ``audio [V,1,F,M]``); classification
averages the views' softmax probabilities (the official protocol), regression averages the outputs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from avf.data.loader import item_bytes
from avf.data.shm import prefetch_factor
from avf.data.transforms import to_model_input
from avf.eval.metrics import classification_metrics, regression_metrics
from avf.models.packed_linear import packed_linears


def _forward(model: nn.Module, video: torch.Tensor, audio: torch.Tensor, head: str | None) -> torch.Tensor:
    if head is None:
        return model(video, audio)
    inner = model.module if hasattr(model, "module") else model
    return inner.heads[head](inner(video, audio))


@torch.no_grad()
def predict_views(
    model: nn.Module,
    dataset: Any,
    indices: Sequence[int],
    device: torch.device,
    batch_size: int = 8,
    regression: bool = False,
    head: str | None = None,
    num_workers: int = 0,
    ranks_per_node: int = 1,
) -> dict[str, np.ndarray]:
    """Outputs for ``dataset[i]`` (a :class:`~avf.data.loader.ClipDataset`) for ``i`` in ``indices``:
    ``scores [N,K]``, ``labels``, ``keys``.

    ``num_workers`` DataLoader processes decode the clips while the model runs (0: in this process), with as
    many batches prefetched as fit in this rank's share of ``/dev/shm`` (``ranks_per_node`` share it).
    """
    was_training = model.training
    model.eval()
    scores, labels, keys = [], [], []
    batch_bytes = batch_size * item_bytes(dataset.clip, dataset.audio, train=False)
    loader = torch.utils.data.DataLoader(
        torch.utils.data.Subset(dataset, list(indices)),
        batch_size=batch_size,
        num_workers=num_workers,
        collate_fn=list,
        pin_memory=device.type == "cuda",
        generator=torch.Generator(),  # the iterator draws its base seed here, not from the training's global RNG
        prefetch_factor=prefetch_factor(num_workers, batch_bytes, ranks_per_node),
    )
    packed = packed_linears(model)
    for items in loader:
        video = torch.stack([it["video"] for it in items]).to(device)  # u8 [B,V,T,S,S,3]
        audio = torch.stack([it["audio"] for it in items]).to(device)  # [B,V,1,F,M]
        b, v = video.shape[:2]
        with packed:
            out = _forward(model, to_model_input(video.flatten(0, 1)), audio.flatten(0, 1), head).float()
        out = out.softmax(-1) if not regression else out
        scores.append(out.view(b, v, -1).mean(1).cpu().numpy())
        labels.extend(np.asarray(it["label"]) for it in items)
        keys.extend(it["key"] for it in items)
    model.train(was_training)
    k = scores[0].shape[1] if scores else 0
    return {
        "scores": np.concatenate(scores) if scores else np.zeros((0, k), np.float32),
        "labels": np.stack(labels) if labels else np.zeros((0,), np.int64),
        "keys": np.asarray(keys, dtype=object),
    }


def score(
    outputs: dict[str, np.ndarray], task: str, num_outputs: int, target_names: Sequence[str] = ()
) -> dict[str, float]:
    """Metrics of gathered :func:`predict_views` outputs."""
    if task == "regression":
        names = list(target_names) or [f"t{i}" for i in range(num_outputs)]
        return regression_metrics(outputs["scores"], outputs["labels"], names)
    return classification_metrics(outputs["labels"], outputs["scores"].argmax(-1), num_outputs)
