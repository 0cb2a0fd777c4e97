"""Training sections of ``params.yaml``: ``pretrain``, ``intermediate``, ``finetune``, ``eval``."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from avf.config.base import Section

SelectRule = Literal["mean_last", "best", "last"]


class OptimConfig(Section):
    """Optimizer and schedule shared by every stage (AdamW, per-step cosine with linear warmup)."""

    epochs: int = Field(1, ge=1)
    batch_size: int = Field(8, ge=1)  # global batch (split across Ray workers)
    accum_steps: int = Field(1, ge=1)  # gradient accumulation steps per optimizer step
    base_lr: float = Field(1e-3, gt=0)  # lr = base_lr * effective_batch / 256
    min_lr: float = Field(1e-6, ge=0)  # also scaled by effective_batch / 256
    warmup_epochs: float = Field(0.0, ge=0)
    weight_decay: float = Field(0.05, ge=0)
    betas: tuple[float, float] = (0.9, 0.999)
    clip_grad: float | None = Field(None, gt=0)
    # auto: bf16 on GPUs and CPUs with native bf16 matmuls, fp16 on older GPUs, fp32 on other CPUs
    amp: Literal["auto", "off", "bf16", "fp16"] = "auto"
    ema_decay: float | None = Field(None, gt=0, lt=1)
    num_workers: int = Field(0, ge=0)  # DataLoader workers per training process
    log_every: int = Field(10, ge=1)  # steps between metric logs

    @field_validator("amp", mode="before")
    @classmethod
    def _unquoted_off(cls, value: object) -> object:
        """YAML 1.1 reads an unquoted ``amp: off`` as false: that is ``off``."""
        return "off" if value is False else value


class ContrastiveConfig(Section):
    """Hierarchical cross-modal contrastive loss (HCMCL), spec section 6.3."""

    enabled: bool = True
    weight: float = Field(0.0025, ge=0)
    temperature: float = Field(0.07, gt=0)
    gather_negatives: bool = False  # all-gather embeddings across workers for more negatives


class PretrainConfig(OptimConfig):
    """Stage 1: self-supervised audio-visual masked autoencoding."""

    base_lr: float = Field(1.5e-4, gt=0)
    min_lr: float = Field(1e-5, ge=0)
    betas: tuple[float, float] = (0.9, 0.95)
    steps_per_epoch: int | None = Field(None, ge=1)  # None: one pass over the pretraining shards
    frame_diff_target: bool = True
    # where the window's JPEG frames are decoded: in the loader (DataLoader worker or Ray task) or, in batch,
    # on the training device (torchvision ``decode_jpeg``, nvJPEG on a GPU); the crops are the same either way
    decode: Literal["worker", "device"] = "worker"
    contrastive: ContrastiveConfig = ContrastiveConfig()


class FinetuneConfig(OptimConfig):
    """Stage 3: targeted fine-tuning on one dataset and fold."""

    init_from: Literal["auto", "pretrain", "intermediate", "scratch"] = "auto"
    layer_decay: float = Field(0.75, gt=0, le=1)
    label_smoothing: float = Field(0.1, ge=0, lt=1)
    mixup: float = Field(0.0, ge=0)
    cutmix: float = Field(0.0, ge=0)
    mixup_audio: bool = True  # mix the audio with the same permutation and lambda as the video
    task: Literal["classification", "regression"] = "classification"
    regression_loss: Literal["mse", "ccc"] = "mse"
    # Which weights are exported (avf/train/selection.py): mean_last averages the weights of the last
    # select_epochs epochs (nothing is picked, so numeric noise cannot flip it); best takes the epoch with
    # the best validation select_metric (ties: the earliest); last takes the final epoch.
    select: SelectRule = "mean_last"
    select_epochs: int = Field(3, ge=1)
    select_metric: str = "uar"  # validation metric of select: best (and of the progress display)


class IntermediateConfig(FinetuneConfig):
    """Stage 2: hybrid intermediate fine-tuning on a mixture of labelled datasets (one head each)."""

    enabled: bool = True
    # Sampling weight per dataset name (datasets with the "intermediate" role); empty: equal weights.
    weights: dict[str, float] = Field(default_factory=dict)
    steps_per_epoch: int | None = Field(None, ge=1)

    @model_validator(mode="after")
    def _weights_positive(self) -> IntermediateConfig:
        bad = {k: v for k, v in self.weights.items() if v <= 0}
        if bad:
            raise ValueError(f"intermediate.weights must be positive, got {bad}")
        return self


EvalMetric = Literal["uar", "war", "macro_f1", "weighted_f1", "pcc", "ccc", "mae", "mse"]


class EvalConfig(Section):
    """Evaluation protocol."""

    # Test metrics written to reports/eval/metrics.json (and MLflow); those that do not apply to the
    # target's task are skipped (classification: uar war macro_f1 weighted_f1; regression: pcc ccc mae
    # mse, with pcc/ccc also per target).
    metrics: tuple[EvalMetric, ...] = ("uar", "war", "macro_f1", "weighted_f1", "pcc", "ccc", "mae", "mse")
    # Also report the official protocol's test-selected number (labelled as such), for comparability.
    report_test_selected: bool = True
    # auto: the first CUDA GPU when present, else the CPU
    device: str = Field("auto", pattern=r"^(auto|cpu|cuda(:\d+)?)$")

    @model_validator(mode="after")
    def _some_metric(self) -> EvalConfig:
        if not self.metrics:
            raise ValueError("eval.metrics is empty: name at least one metric")
        return self
