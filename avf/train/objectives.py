"""Supervised objectives: audio-visual mixup/cutmix, label-smoothed CE, regression (MSE / CCC) losses."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from timm.data.mixup import mixup_target, rand_bbox
from timm.loss import SoftTargetCrossEntropy
from torch import nn

from avf.config.train import FinetuneConfig


@dataclass
class AVMixup:
    """Mixup / CutMix for (video, audio) pairs with one lambda and one pairing per batch.

    The official code mixes the video only while mixing the labels; here the audio is mixed with the
    same pairing and lambda (``mix_audio=True``) so the labels describe both inputs (spec 11.3).
    CutMix cuts one box (the same for all frames) from the partner clip; the audio then takes the same
    share of its time axis from the partner, as one contiguous block.
    video: ``[B,3,T,H,W]``; audio: ``[B,1,F,M]``; labels: ``[B]`` int64 -> soft targets ``[B,K]``.
    """

    mixup_alpha: float
    cutmix_alpha: float
    num_classes: int
    smoothing: float = 0.1
    switch_prob: float = 0.5
    mix_audio: bool = True

    @property
    def active(self) -> bool:
        return self.mixup_alpha > 0 or self.cutmix_alpha > 0

    def __call__(
        self, video: torch.Tensor, audio: torch.Tensor, labels: torch.Tensor, rng: np.random.Generator
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if len(video) % 2:
            raise ValueError("mixup needs an even per-worker batch size")
        use_cutmix = self.cutmix_alpha > 0 and (self.mixup_alpha <= 0 or rng.random() < self.switch_prob)
        alpha = self.cutmix_alpha if use_cutmix else self.mixup_alpha
        lam = float(rng.beta(alpha, alpha))
        partner_v, partner_a = video.flip(0), audio.flip(0)
        if use_cutmix:
            h, w = video.shape[-2:]
            # rand_bbox draws from numpy's global RNG; seed it from our generator for reproducibility.
            np.random.seed(int(rng.integers(2**31)))
            yl, yh, xl, xh = rand_bbox((h, w), lam)
            video = video.clone()
            video[..., yl:yh, xl:xh] = partner_v[..., yl:yh, xl:xh]
            lam = 1.0 - (yh - yl) * (xh - xl) / float(h * w)
            if self.mix_audio:
                frames = audio.shape[-2]
                cut = round((1 - lam) * frames)
                start = int(rng.integers(0, frames - cut + 1))
                audio = audio.clone()
                audio[..., start : start + cut, :] = partner_a[..., start : start + cut, :]
        else:
            video = video * lam + partner_v * (1 - lam)
            if self.mix_audio:
                audio = audio * lam + partner_a * (1 - lam)
        target = mixup_target(labels, self.num_classes, lam, self.smoothing)
        return video, audio, target


def classification_loss(logits: torch.Tensor, target: torch.Tensor, smoothing: float) -> torch.Tensor:
    """Soft-target CE for mixed labels ``[B,K]``, else label-smoothed CE on int labels ``[B]``."""
    if target.ndim == 2:
        return SoftTargetCrossEntropy()(logits, target)
    return F.cross_entropy(logits, target, label_smoothing=smoothing)


def ccc_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``1 - CCC`` averaged over target dimensions; ``pred``/``target`` are ``[B,D]``."""
    pm, tm = pred.mean(0), target.mean(0)
    pv, tv = pred.var(0, unbiased=False), target.var(0, unbiased=False)
    cov = ((pred - pm) * (target - tm)).mean(0)
    ccc = 2 * cov / (pv + tv + (pm - tm) ** 2 + 1e-8)
    return (1 - ccc).mean()


def regression_loss(pred: torch.Tensor, target: torch.Tensor, kind: str) -> torch.Tensor:
    if kind == "ccc":
        return ccc_loss(pred, target)
    return F.mse_loss(pred, target)


def multi_head_loss(
    feats: torch.Tensor,
    heads: Mapping[str, nn.Module],
    labels: torch.Tensor,
    names: Sequence[str],
    tasks: Mapping[str, str],
    cfg: FinetuneConfig,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Stage 2's loss: each clip through its dataset's head, losses weighted by the datasets' shares.

    ``feats [B, D]`` backbone features, ``labels [B]`` (or ``[B, K]`` targets), ``names`` the dataset of
    each row, ``tasks`` dataset -> classification / regression in head order. Every head runs, on zero
    rows when the micro-batch has none of its clips, so DDP sees all parameters in every step. The rows
    are chosen on the host from ``names``: no device synchronisation. Returns the loss and detached logs.
    """
    unknown = set(names) - set(tasks)
    if unknown:
        raise KeyError(f"rows of datasets without a head: {sorted(unknown)} (heads: {list(tasks)})")
    total = feats.new_zeros(())
    logs: dict[str, torch.Tensor] = {}
    for name, task in tasks.items():
        rows = [i for i, n in enumerate(names) if n == name]
        index = torch.tensor(rows, dtype=torch.long).to(feats.device, non_blocking=True)
        out = heads[name](feats.index_select(0, index)).float()
        if not rows:
            total = total + out.sum()  # zero, but it keeps the head in the graph
            continue
        target = labels.index_select(0, index)
        part = (
            regression_loss(out, target.float(), cfg.regression_loss)
            if task == "regression"
            else classification_loss(out, target, cfg.label_smoothing)
        )
        total = total + part * (len(rows) / len(names))
        logs[f"loss_{name}"] = part.detach()
    logs["loss"] = total.detach()
    return total, logs
