"""Every parameter gets a gradient in one training step, for every stage and every ablation switch.

Ray Train wraps the model in DDP with ``find_unused_parameters=False``: a parameter outside the step's
graph (on any rank) makes the second step fail with "Expected to have finished reduction in the prior
iteration". This is that check without processes: one step per stage and switch, then no ``grad`` may
be None. The README's ablation switches are the cases; stage 2 also with a micro-batch that has no clip
of one dataset (its head must still be in the graph).
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

from avf.config import Params
from avf.models.factory import finetune_model, multihead_model, pretrain_model
from avf.models.masking import sample_masks
from avf.train.objectives import multi_head_loss

B = 2
SWITCHES: dict[str, dict[str, Any]] = {
    "defaults": {},
    "no-decoder-masking": {"masking": {"decoder_masking": False}},
    "raster-lg-grouping": {"masking": {"region_balanced": False}},
    "no-lg-fourth-attn": {"model": {"lg_fourth_attn": False}},
    "no-iavcl": {"model": {"iavcl": False}},
    "no-contrastive": {"pretrain": {"contrastive": {"enabled": False}}},
}


def _params(overrides: dict[str, Any]) -> Params:
    return Params.model_validate(overrides)


def _inputs() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.randn(B, 3, 16, 160, 160, generator=g), torch.randn(B, 1, 256, 128, generator=g)


def _without_grad(model: nn.Module) -> list[str]:
    return [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]


@pytest.mark.parametrize("switch", list(SWITCHES))
def test_pretraining_step(switch: str) -> None:
    p = _params(SWITCHES[switch])
    model = pretrain_model(p.model, p.pretrain, p.masking)
    video, audio = _inputs()
    masks = sample_masks(B, p.masking, torch.Generator().manual_seed(1))
    model(video, audio, masks).loss.backward()
    assert _without_grad(model) == []


@pytest.mark.parametrize("switch", list(SWITCHES))
@pytest.mark.parametrize("names", [("a", "b"), ("a", "a")], ids=["both-datasets", "one-dataset-missing"])
def test_multi_head_step(switch: str, names: tuple[str, str]) -> None:
    p = _params(SWITCHES[switch])
    model = multihead_model(p.model, {"a": 3, "b": 2})
    video, audio = _inputs()
    tasks = {"a": "classification", "b": "classification"}
    loss, _ = multi_head_loss(model(video, audio), model.heads, torch.tensor([1, 0]), names, tasks, p.intermediate)
    loss.backward()
    assert _without_grad(model) == []


@pytest.mark.parametrize("switch", list(SWITCHES))
@pytest.mark.parametrize("task", ["classification", "regression"])
def test_fine_tuning_step(switch: str, task: str) -> None:
    p = _params(SWITCHES[switch])
    model = finetune_model(p.model, 3)
    video, audio = _inputs()
    out = model(video, audio).float()
    loss = out.logsumexp(-1).mean() if task == "classification" else out.pow(2).mean()
    loss.backward()
    assert _without_grad(model) == []


def test_rows_of_a_dataset_without_a_head_are_an_error() -> None:
    p = _params({})
    feats = torch.zeros(2, 4)
    heads = {"a": nn.Linear(4, 3)}
    with pytest.raises(KeyError, match=r"without a head: \['b'\]"):
        multi_head_loss(feats, heads, torch.tensor([0, 1]), ("a", "b"), {"a": "classification"}, p.intermediate)
