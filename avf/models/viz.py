"""Reconstruction picture (the paper's figure): input, masked input and reconstruction, video and audio.

Predictions live in target space (per-patch normalized, frame difference for the second frame of each
tubelet); they are mapped back with the statistics of the matching input patch (the usual MAE display
convention). Visible patches show the input; hidden patches the decoder does not reconstruct are grey.
"""

from __future__ import annotations

import torch
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from torch import Tensor

from avf.geometry import AUDIO_GRID, VIDEO_GRID
from avf.models.avf_mae_pp import PretrainOutput
from avf.models.losses import NORM_EPS
from avf.models.masking import Masks

__all__ = ["reconstruct"]

GREY = 0.5


def _unnormalize_video(video: Tensor) -> Tensor:
    mean = video.new_tensor(IMAGENET_DEFAULT_MEAN).view(1, 3, 1, 1, 1)
    std = video.new_tensor(IMAGENET_DEFAULT_STD).view(1, 3, 1, 1, 1)
    return video * std + mean


def _video_patches(video: Tensor) -> Tensor:
    """``[B, 3, T, H, W] -> [B, N, 3, pt, ph, pw]`` in flat (t, h, w) token order."""
    b, c, t, h, w = video.shape
    gt, gh, gw = VIDEO_GRID
    x = video.reshape(b, c, gt, t // gt, gh, h // gh, gw, w // gw).permute(0, 2, 4, 6, 1, 3, 5, 7)
    return x.reshape(b, gt * gh * gw, c, t // gt, h // gh, w // gw)


def _fold_video(patches: Tensor) -> Tensor:
    """Inverse of ``_video_patches``."""
    b, _, c, pt, ph, pw = patches.shape
    gt, gh, gw = VIDEO_GRID
    x = patches.reshape(b, gt, gh, gw, c, pt, ph, pw).permute(0, 4, 1, 5, 2, 6, 3, 7)
    return x.reshape(b, c, gt * pt, gh * ph, gw * pw)


def _audio_patches(audio: Tensor) -> Tensor:
    b, c, t, f = audio.shape
    gt, gf = AUDIO_GRID
    x = audio.reshape(b, c, gt, t // gt, gf, f // gf).permute(0, 2, 4, 1, 3, 5)
    return x.reshape(b, gt * gf, c, t // gt, f // gf)


def _fold_audio(patches: Tensor) -> Tensor:
    b, _, c, pt, pf = patches.shape
    gt, gf = AUDIO_GRID
    return patches.reshape(b, gt, gf, c, pt, pf).permute(0, 3, 1, 4, 2, 5).reshape(b, c, gt * pt, gf * pf)


def _denormalize(pred: Tensor, patches: Tensor) -> Tensor:
    """Map per-patch normalized ``pred [B, m, C, P]`` back with the stats of ``patches [B, m, C, P]``."""
    mean = patches.mean(dim=-1, keepdim=True)
    std = patches.var(dim=-1, unbiased=True, keepdim=True).sqrt() + NORM_EPS
    return pred * std + mean


@torch.no_grad()
def reconstruct(video: Tensor, audio: Tensor, masks: Masks, out: PretrainOutput) -> dict[str, Tensor]:
    """Pictures as tensors: ``video``/``video_masked``/``video_recon`` ``[B, 3, T, H, W]`` in [0, 1] and
    ``audio``/``audio_masked``/``audio_recon`` ``[B, 1, 256, 128]`` (input units)."""
    video, audio = video.detach().float().cpu(), audio.detach().float().cpu()
    v_enc, a_enc = masks.video_enc.cpu(), masks.audio_enc.cpu()
    v_idx, a_idx = out.video_dec_index.cpu(), out.audio_dec_index.cpu()
    rows = torch.arange(video.shape[0])[:, None]

    pixels = _video_patches(_unnormalize_video(video))  # [B, N, 3, pt, ph, pw]
    b, _, c, pt, ph, pw = pixels.shape
    pred = out.pred_video.detach().float().cpu().view(b, -1, pt, ph, pw, c).permute(0, 1, 5, 2, 3, 4)
    if out.frame_diff_target:
        pred = torch.cat((pred[:, :, :, :1], pred[:, :, :, 1:] + pred[:, :, :, :1]), dim=3)
    src = pixels[rows, v_idx]
    rec = _denormalize(pred.reshape(b, -1, c, pt * ph * pw), src.reshape(b, -1, c, pt * ph * pw))
    masked = torch.where(v_enc[:, :, None, None, None, None], GREY, pixels)
    recon = masked.clone()
    hidden_dec = v_enc[rows, v_idx]
    recon_dec = torch.where(hidden_dec[:, :, None, None, None, None], rec.view_as(src), src)
    recon[rows, v_idx] = recon_dec

    a_patches = _audio_patches(audio)
    ab, _, ac, apt, apf = a_patches.shape
    a_src = a_patches[rows, a_idx]
    a_pred = out.pred_audio.detach().float().cpu().view(ab, -1, ac, apt * apf)
    a_rec = _denormalize(a_pred, a_src.reshape(ab, -1, ac, apt * apf)).view_as(a_src)
    fill = float(audio.min())
    a_masked = torch.where(a_enc[:, :, None, None, None], fill, a_patches)
    a_recon = a_masked.clone()
    a_recon[rows, a_idx] = torch.where(a_enc[rows, a_idx][:, :, None, None, None], a_rec, a_src)
    return {
        "video": _fold_video(pixels).clamp(0, 1),
        "video_masked": _fold_video(masked).clamp(0, 1),
        "video_recon": _fold_video(recon).clamp(0, 1),
        "audio": audio,
        "audio_masked": _fold_audio(a_masked),
        "audio_recon": _fold_audio(a_recon),
    }
