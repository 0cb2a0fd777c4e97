"""AVF-MAE++ pretraining objectives (spec sections 6.2-6.4).

* Reconstruction targets: per-patch, per-channel normalized pixels ``(x - mean) / (unbiased std + 1e-6)``
  after undoing the ImageNet normalization, laid out ``(p0, p1, p2, c)`` = 1536 values per tubelet; with
  the frame-difference target the second frame of each tubelet becomes ``norm(f1) - norm(f0)``. Audio:
  per 16x16 fbank patch normalized the same way (256 values).
* ``masked_mse``: MSE per token (mean over values), averaged over the loss positions of the batch, i.e.
  positions hidden from the encoder and kept by the decoder.
* ``hcmcl``: hierarchical cross-modal contrastive loss, ``1/2 [CE(S, I) + CE(S^T, I)]`` with
  ``S = z_v z_a^T / tau`` summed over the chosen encoder layers (the caller applies the 0.0025 weight).
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from torch import Tensor

# At module level on purpose: ``all_gather``'s default ``group=WORLD`` is evaluated when this module is first
# imported, and a first import after ``init_process_group`` would hold that group past
# ``destroy_process_group`` (its gloo threads then outlive the interpreter and abort its shutdown).
from torch.distributed.nn.functional import all_gather

NORM_EPS = 1e-6

__all__ = [
    "audio_targets",
    "contrastive_loss",
    "hcmcl",
    "masked_mse",
    "normalize_patches",
    "video_targets",
]


def normalize_patches(x: Tensor) -> Tensor:
    """Normalize over the last dim: ``(x - mean) / (unbiased std + 1e-6)``."""
    return (x - x.mean(dim=-1, keepdim=True)) / (x.var(dim=-1, unbiased=True, keepdim=True).sqrt() + NORM_EPS)


@torch.no_grad()
def video_targets(patches: Tensor, frame_diff: bool = True) -> Tensor:
    """Reconstruction targets for tubelets.

    Args:
        patches: ``[B, n, 3, pt, ph, pw]`` ImageNet-normalized tubelets (``gather_video_patches`` layout).
        frame_diff: replace frames 1.. of each tubelet by their difference to the tubelet's first frame.

    Returns:
        ``[B, n, pt*ph*pw*3]`` float32 targets laid out ``(p0, p1, p2, c)``.
    """
    b, n, c, pt, ph, pw = patches.shape
    x = patches.float()
    mean = x.new_tensor(IMAGENET_DEFAULT_MEAN).view(1, 1, 3, 1, 1, 1)
    std = x.new_tensor(IMAGENET_DEFAULT_STD).view(1, 1, 3, 1, 1, 1)
    x = normalize_patches((x * std + mean).view(b, n, c, -1)).view(b, n, c, pt, ph * pw)
    if frame_diff:
        x = torch.cat((x[:, :, :, :1], x[:, :, :, 1:] - x[:, :, :, :1]), dim=3)
    return x.permute(0, 1, 3, 4, 2).reshape(b, n, -1)


@torch.no_grad()
def audio_targets(patches: Tensor) -> Tensor:
    """``[B, n, 1, pt, pf]`` normalized fbank patches -> per-patch normalized ``[B, n, pt*pf]`` float32."""
    return normalize_patches(patches.float().flatten(2))


def masked_mse(pred: Tensor, target: Tensor, weight: Tensor, overwrite_target: bool = False) -> Tensor:
    """Mean over values, then over the positions where ``weight`` is true (whole batch).

    The value, and its gradient, are those of ``(pred.float() - target).pow(2).mean(-1)`` weighted by
    ``weight`` (to the last bit on the CPU; a GPU's row reductions may add up a short last chunk in another
    order), but for contiguous inputs no ``[B, m, D]`` difference is kept for backward and none exists in
    forward: at the end of the pretraining forward, when every saved activation is alive, that difference
    and its square were the largest tensors not saved by the model (about 5 MiB per clip for base).

    Args:
        pred: ``[B, m, D]``; target: ``[B, m, D]`` float32; weight: ``[B, m]`` bool (loss positions); target
            and weight are constants (no gradient).
        overwrite_target: backward computes the float32 difference ``pred - target`` in ``target``'s memory
            (when it is contiguous and ``pred`` is float32, bfloat16 or float16): for a float32 ``pred`` that
            is the gradient itself, so it takes no memory of its own; a bfloat16 ``pred`` gets a new
            bfloat16 gradient. For a target nobody reads after backward; a second backward through the
            same graph then raises.
    """
    return _MaskedMSE.apply(pred, target, weight, overwrite_target)


MSE_CHUNK_ROWS = 256  # rows of pred whose difference to the target exists at a time in forward


class _MaskedMSE(torch.autograd.Function):
    """:func:`masked_mse`: forward over row chunks; saves ``pred`` and ``target`` (alive anyway: the model
    returns ``pred`` and the loss reads ``target``), and backward computes the difference once."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any, pred: Tensor, target: Tensor, weight: Tensor, overwrite_target: bool
    ) -> Tensor:
        if pred.shape != target.shape or pred.shape[:-1] != weight.shape:
            raise ValueError(f"masked_mse: pred {tuple(pred.shape)}, target {tuple(target.shape)} and weight "
                             f"{tuple(weight.shape)} do not match ([B, m, D], [B, m, D], [B, m])")  # fmt: skip
        if ctx.needs_input_grad[1] or ctx.needs_input_grad[2]:
            raise ValueError("masked_mse: the target and the weights are constants; they must not require grad")
        d = pred.shape[-1]
        rows = zip(pred.reshape(-1, d).split(MSE_CHUNK_ROWS), target.reshape(-1, d).split(MSE_CHUNK_ROWS), strict=True)
        per_token = torch.cat([(p.float() - t).pow_(2).mean(dim=-1) for p, t in rows]).view(weight.shape)
        w = weight.to(per_token.dtype)
        w_sum = w.sum().clamp_min(1.0)
        ctx.save_for_backward(pred, target, w, w_sum)
        # the difference must be rounded as pred.float() - target is: no float64 pred
        ctx.overwrite = (
            overwrite_target
            and target.dtype == torch.float32
            and target.is_contiguous()
            and pred.dtype in (torch.float32, torch.bfloat16, torch.float16)
        )
        return (per_token * w).sum() / w_sum

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None, None, None]:  # type: ignore[override]
        pred, target, w, w_sum = ctx.saved_tensors
        # the chain autograd runs for the formula above, in its order of roundings: d/dx mean = 1/D, then
        # d/dx x^2 = 2x (2x is exact)
        scale = ((grad / w_sum) * w).unsqueeze(-1) / pred.shape[-1]
        diff = torch.sub(pred, target, out=target) if ctx.overwrite else pred.float() - target
        return diff.mul_(2).mul_(scale).to(pred.dtype), None, None, None


def _gather_with_grad(x: Tensor) -> tuple[Tensor, int]:
    """All-gather ``x [B, C]`` over the default process group, keeping the gradient path."""
    return torch.cat(all_gather(x), dim=0), torch.distributed.get_rank()


def contrastive_loss(z_v: Tensor, z_a: Tensor, temperature: float = 0.07, gather_negatives: bool = False) -> Tensor:
    """Symmetric InfoNCE between L2-normalized clip embeddings.

    Args:
        z_v, z_a: ``[B, C]`` L2-normalized video / audio embeddings (row i of each is the same clip).
        temperature: fixed logit scale ``1 / tau``.
        gather_negatives: when a ``torch.distributed`` process group is initialized, contrast the local
            rows against the embeddings of every rank (gradient-preserving all-gather); otherwise only
            the local batch provides negatives.

    Returns:
        ``1/2 [CE(z_v z_a^T / tau, I) + CE(z_a z_v^T / tau, I)]`` averaged over the local rows.
    """
    b = z_v.shape[0]
    all_v, all_a, offset = z_v, z_a, 0
    if gather_negatives and torch.distributed.is_available() and torch.distributed.is_initialized():
        all_v, rank = _gather_with_grad(z_v)
        all_a, _ = _gather_with_grad(z_a)
        offset = rank * b
    labels = torch.arange(offset, offset + b, device=z_v.device)
    # autocast would run these matmuls in bf16/fp16 whatever the inputs' dtype: similarities of unit
    # vectors divided by a small temperature need fp32
    kind = z_v.device.type
    autocasting = kind in ("cpu", "cuda") and torch.is_autocast_enabled(kind)
    with torch.autocast(device_type=kind, enabled=False) if autocasting else contextlib.nullcontext():
        logits_v = z_v.float() @ all_a.float().t() / temperature
        logits_a = z_a.float() @ all_v.float().t() / temperature
        return 0.5 * (F.cross_entropy(logits_v, labels) + F.cross_entropy(logits_a, labels))


def hcmcl(
    video_feats: Sequence[Tensor],
    audio_feats: Sequence[Tensor],
    temperature: float = 0.07,
    gather_negatives: bool = False,
) -> Tensor:
    """Hierarchical cross-modal contrastive loss summed over layers.

    Args:
        video_feats, audio_feats: per layer, normalized visible local tokens ``[B, n, C]``; each is
            mean-pooled over tokens and L2-normalized before the contrastive loss.
    """
    if len(video_feats) != len(audio_feats) or not video_feats:
        raise ValueError("hcmcl needs the same, non-zero number of video and audio layers")
    total = video_feats[0].new_zeros((), dtype=torch.float32)
    for v, a in zip(video_feats, audio_feats, strict=True):
        z_v = F.normalize(v.float().mean(dim=1), dim=-1)
        z_a = F.normalize(a.float().mean(dim=1), dim=-1)
        total = total + contrastive_loss(z_v, z_a, temperature, gather_negatives)
    return total
