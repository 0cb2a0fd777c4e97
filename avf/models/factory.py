"""Parameters -> model: the one place that turns ``params.yaml`` sections into constructor arguments.

Every stage builds its model here: pretraining (:func:`pretrain_model`), the fine-tuning model of stages
2 and 3 (:func:`finetune_model`) and the stage-2 multi-head model (:func:`multihead_model`). A model read
back from a stage output (evaluation, prediction) is built from the ``model`` entry of its card through the
same functions (``avf.artifacts.cards``), so training and inference cannot disagree on the architecture.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from avf.config.model import MaskingConfig, ModelConfig
from avf.config.train import PretrainConfig
from avf.models.avf_mae_pp import AVFMAEPretrain
from avf.models.avf_vit import AVFViT
from avf.models.build import create_model, model_name
from avf.models.multihead import MultiHeadModel

__all__ = ["architecture", "finetune_model", "multihead_model", "pretrain_model"]


def architecture(model: ModelConfig) -> dict[str, Any]:
    """The switches that change the parameter layout (what a model card must record)."""
    return {"lg_fourth_attn": model.lg_fourth_attn, "iavcl": model.iavcl}


def _training(model: ModelConfig, training: bool) -> dict[str, Any]:
    return {"grad_checkpointing": model.grad_checkpointing} if training else {}


def pretrain_model(
    model: ModelConfig, pretrain: PretrainConfig, masking: MaskingConfig, *, training: bool = True
) -> AVFMAEPretrain:
    """Stage 1's model: the reconstruction targets, contrastive loss and LG grouping of ``params.yaml``."""
    c = pretrain.contrastive
    return create_model(  # type: ignore[return-value]
        model_name("pretrain", model.size),
        **architecture(model),
        drop_path=0.0,
        frame_diff_target=pretrain.frame_diff_target,
        contrastive_weight=c.weight if c.enabled else 0.0,
        temperature=c.temperature,
        gather_negatives=c.gather_negatives,
        region_balanced=masking.region_balanced,
        **_training(model, training),
    )


def finetune_model(model: ModelConfig, num_classes: int, *, training: bool = True, **overrides: Any) -> AVFViT:
    """The fine-tuning model (stage 3, and stage 2's backbone); drop path only while training."""
    return create_model(  # type: ignore[return-value]
        model_name("finetune", model.size),
        num_classes=num_classes,
        **architecture(model),
        drop_path=model.drop_path if training else 0.0,
        **_training(model, training),
        **overrides,
    )


def multihead_model(model: ModelConfig, heads: Mapping[str, int], *, training: bool = True) -> MultiHeadModel:
    """Stage 2: the fine-tuning backbone without head or ``fc_norm``, one head per dataset (name -> outputs)."""
    return MultiHeadModel(finetune_model(model, 0, training=training, fc_norm=False), dict(heads))
