"""Stage hand-offs: stage 1 -> stage 2 backbone, stage 2 -> stage 3, and mismatches are errors."""

from __future__ import annotations

import pytest
import torch

from avf.models import MultiHeadModel, create_model, init_finetune_from_pretrain, split_multihead


def test_stage2_backbone_initialises_stage3_exactly() -> None:
    torch.manual_seed(0)
    stage2 = MultiHeadModel(create_model("avf_mae_pp_tiny", num_classes=0), {"cremad": 6, "mafw": 11})
    backbone, heads = split_multihead(stage2.state_dict())
    assert set(heads) == {
        f"heads.{d}.{p}" for d in ("cremad", "mafw") for p in ("0.weight", "0.bias", "1.weight", "1.bias")
    }
    stage3 = create_model("avf_mae_pp_tiny", num_classes=8)
    report = init_finetune_from_pretrain(stage3, backbone)
    assert report["unexpected"] == [] and report["dropped"] == []
    assert {k.split(".")[0] for k in report["missing"]} <= {"head", "fc_norm"}
    own = stage3.state_dict()
    for k, v in backbone.items():
        torch.testing.assert_close(own[k], v)


def test_stage1_weights_initialise_the_stage2_backbone() -> None:
    pre = create_model("avf_mae_pp_pretrain_tiny")
    backbone = create_model("avf_mae_pp_tiny", num_classes=0)
    report = init_finetune_from_pretrain(backbone, pre.state_dict())
    assert report["unexpected"] == [] and report["dropped"]
    assert len(backbone.state_dict()) - len(report["missing"]) > 100


def test_split_rejects_a_plain_state_dict() -> None:
    with pytest.raises(ValueError, match="not a multi-head state dict"):
        split_multihead(create_model("avf_mae_pp_tiny", num_classes=3).state_dict())
