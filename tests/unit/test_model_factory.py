"""Every stage builds its model from params through ``avf.models.factory``: one place, no drift."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch

from avf.config import parse_params
from avf.models.factory import finetune_model, multihead_model, pretrain_model

AVF = Path(__file__).resolve().parents[2] / "avf"


@pytest.mark.parametrize("frame_diff", [True, False])
def test_the_reconstruction_model_follows_the_frame_difference_switch(frame_diff: bool) -> None:
    params = parse_params({"model": {"size": "tiny"}, "pretrain": {"frame_diff_target": frame_diff}})
    for training in (True, False):
        model = pretrain_model(params.model, params.pretrain, params.masking, training=training)
        assert model.frame_diff_target is frame_diff


def test_switches_reach_every_stage_model() -> None:
    params = parse_params({"model": {"size": "tiny", "iavcl": False, "lg_fourth_attn": False, "drop_path": 0.2}})
    fine = finetune_model(params.model, 5)
    assert not any(k.startswith("fusion") or "iavcl" in k for k in fine.state_dict())
    assert fine.head.out_features == 5
    evaluation = finetune_model(params.model, 5, training=False)
    assert set(evaluation.state_dict()) == set(fine.state_dict())
    multi = multihead_model(params.model, {"a": 3, "b": 2})
    assert {k.removeprefix("backbone.") for k in multi.state_dict() if k.startswith("backbone.")} < set(
        fine.state_dict()
    )
    with torch.no_grad():
        out = multi(torch.zeros(1, 3, 16, 160, 160), torch.zeros(1, 1, 256, 128))
    assert out.shape == (1, multi.backbone.num_features)


def _calls(path: Path, name: str) -> list[int]:
    tree = ast.parse(path.read_text())
    return [
        n.lineno
        for n in ast.walk(tree)
        if isinstance(n, ast.Call)
        and (
            (isinstance(n.func, ast.Name) and n.func.id == name)
            or (isinstance(n.func, ast.Attribute) and n.func.attr == name)
        )
    ]


def test_no_stage_builds_a_model_by_hand() -> None:
    """``create_model`` is called only by the model package, the checkpoint files it reads and ``avf model``."""
    allowed = {"models", "artifacts"}
    allowed_files = {AVF / "cli" / "model.py"}
    offenders = [
        f"{p.relative_to(AVF.parent)}:{line}"
        for p in AVF.rglob("*.py")
        if p.relative_to(AVF).parts[0] not in allowed and p not in allowed_files
        for line in _calls(p, "create_model")
    ]
    assert offenders == []
