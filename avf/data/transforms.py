"""Clip-level video transforms and the audio gain (spec section 2.4), seeded per sample.

All randomness comes from a ``numpy.random.Generator`` passed in (the loader derives it from
``(seed, epoch, index)``), so a sample's augmentation does not depend on worker assignment. Every
video op draws its parameters once per clip and applies them to all frames:

- fine-tuning train (:meth:`ClipTransform.finetune`): RandAugment (timm ``rand_augment_transform``,
  default ``rand-m7-n4-mstd0.5-inc1``; the Python/NumPy RNGs timm uses are re-seeded identically for
  each frame, so every frame gets the same ops and magnitudes), random-resized crop (scale
  ``data.augment.rrc_scale``, default the official (0.08, 1)), horizontal flip, then one random-pixel
  erasing box per clip (the official code draws one per frame: a flickering occlusion), drawn here and
  applied by :func:`to_model_input`;
- pretraining (:meth:`ClipTransform.pretrain`): VideoMAE's multi-scale crop (scales 1, .875, .75, .66,
  fixed corner/centre offsets), then resize; no flip, no colour;
- evaluation (:meth:`ClipTransform.eval`): resize only.

Clips stay ``uint8 [T, S, S, 3]`` frames (the decoder's layout) until the device, for training and for
evaluation: crops, resizes (torch's uint8 bilinear with antialiasing on channels-last frames: within 1 level
of the float resize, about 9x faster) and flips run on bytes, so DataLoader workers pass a quarter of the
float32 bytes through shared memory, and :func:`to_model_input` transposes, converts, normalises and erases
a whole batch where the model runs.
:func:`audio_gain` draws the train-time ``Beta(b, b) + 0.5`` amplitude gain (the surviving part of the
official ``roll_mag_aug``).
"""

from __future__ import annotations

import functools
import math
import random

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

from avf.config.data import AugmentConfig

__all__ = [
    "ClipTransform",
    "audio_gain",
    "decode_on_device",
    "erase_box",
    "multi_scale_crop_params",
    "rrc_params",
    "to_model_input",
]

_MEAN255 = torch.tensor(IMAGENET_DEFAULT_MEAN).view(3, 1, 1, 1) * 255.0
_STD255 = torch.tensor(IMAGENET_DEFAULT_STD).view(3, 1, 1, 1) * 255.0


def rrc_params(
    rng: np.random.Generator, height: int, width: int, scale: tuple[float, float], ratio: tuple[float, float]
) -> tuple[int, int, int, int]:
    """(top, left, h, w) of a random-resized crop (torchvision's algorithm: 10 tries, then centre)."""
    area = height * width
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target = area * rng.uniform(scale[0], scale[1])
        aspect = math.exp(rng.uniform(*log_ratio))
        w = round(math.sqrt(target * aspect))
        h = round(math.sqrt(target / aspect))
        if 0 < w <= width and 0 < h <= height:
            return int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1)), h, w
    in_ratio = width / height
    if in_ratio < ratio[0]:
        w, h = width, round(width / ratio[0])
    elif in_ratio > ratio[1]:
        h, w = height, round(height * ratio[1])
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


def multi_scale_crop_params(
    rng: np.random.Generator, height: int, width: int, size: int, scales: tuple[float, ...], max_distort: int
) -> tuple[int, int, int, int]:
    """(top, left, h, w) of VideoMAE's ``GroupMultiScaleCrop`` with fixed (13) offsets."""
    base = min(width, height)
    sizes = [int(base * s) for s in scales]
    crop_h = [size if abs(x - size) < 3 else x for x in sizes]
    crop_w = [size if abs(x - size) < 3 else x for x in sizes]
    pairs = [(w, h) for i, h in enumerate(crop_h) for j, w in enumerate(crop_w) if abs(i - j) <= max_distort]
    cw, ch = pairs[int(rng.integers(len(pairs)))]
    cw, ch = min(cw, width), min(ch, height)
    ws, hs = (width - cw) // 4, (height - ch) // 4
    offsets = [(0, 0), (4, 0), (0, 4), (4, 4), (2, 2), (0, 2), (4, 2), (2, 4), (2, 0), (1, 1), (3, 1), (1, 3), (3, 3)]
    ox, oy = offsets[int(rng.integers(len(offsets)))]
    return oy * hs, ox * ws, ch, cw


NO_ERASE = (0, 0, 0, 0, 0)


def erase_box(rng: np.random.Generator, prob: float, height: int, width: int) -> tuple[int, int, int, int, int]:
    """timm-style random erasing (pixel mode, 1 box, area 2-33 %, aspect 0.3-3.3), one box per clip:
    ``(top, left, h, w, noise seed)``, or :data:`NO_ERASE` (h = 0). :func:`to_model_input` fills the box with
    N(0, 1) noise (independent per frame) after normalisation."""
    if prob <= 0 or rng.random() >= prob:
        return NO_ERASE
    for _ in range(10):
        target = height * width * rng.uniform(0.02, 1 / 3)
        aspect = math.exp(rng.uniform(math.log(0.3), math.log(1 / 0.3)))
        eh, ew = round(math.sqrt(target * aspect)), round(math.sqrt(target / aspect))
        if ew < width and eh < height:
            top, left = int(rng.integers(0, height - eh + 1)), int(rng.integers(0, width - ew + 1))
            return top, left, eh, ew, int(rng.integers(2**31))
    return NO_ERASE


@functools.cache
def _normalisation(device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """ImageNet mean and std (x 255) on ``device``, copied there once: a copy per step would wait for the GPU."""
    return _MEAN255.to(device), _STD255.to(device)


def to_model_input(video: torch.Tensor, erase: torch.Tensor | None = None) -> torch.Tensor:
    """``uint8 [B, T, S, S, 3]`` training clips (on the device they train on) -> the model's normalized
    ``f32 [B, 3, T, S, S]``. ``erase`` (``int64 [B, 5]`` of :func:`erase_box`, on the host: reading it needs
    no device sync) fills each clip's box with N(0, 1) noise from its seed, drawn on the clips' device (a
    CUDA generator draws other numbers than the CPU's for the same seed: the noise, not its distribution,
    depends on the device)."""
    mean, std = _normalisation(video.device)
    b, t, h, w, c = video.shape
    x = torch.empty((b, c, t, h, w), device=video.device).copy_(video.permute(0, 4, 1, 2, 3)).sub_(mean).div_(std)
    if erase is None:
        return x
    for i, (top, left, eh, ew, seed) in enumerate(erase.tolist()):
        if eh:
            gen = torch.Generator(device=x.device).manual_seed(seed)
            x[i, :, :, top : top + eh, left : left + ew] = torch.randn((c, t, eh, ew), generator=gen, device=x.device)
    return x


def decode_on_device(
    jpeg: torch.Tensor, sizes: torch.Tensor, crops: torch.Tensor, size: int, device: torch.device
) -> tuple[torch.Tensor, list[int]]:
    """Decode a batch's JPEG frames on ``device`` (nvJPEG on a GPU) and crop and resize them as
    :meth:`ClipTransform.pretrain` does: ``uint8 [B', T, S, S, 3]`` and the indices of the ``B'`` clips kept.

    ``jpeg``: every frame's bytes back to back (``uint8 [N]``, on the host), ``sizes``: ``int64 [B, T]`` bytes
    per frame, ``crops``: ``int64 [B, 4]`` boxes. A clip with a frame that does not decode, or decodes to
    another size than its first frame, is left out; a batch with no clip left is a ``ValueError``. On the
    CPU the clips equal the worker's (the same decoded pixels, the same uint8 resize); on a GPU the resize
    runs in float and rounds, and nvJPEG's IDCT may differ by a level.
    """
    b, t = sizes.shape
    frames = list(torch.split(jpeg, sizes.flatten().tolist()))
    decoded = _decoded(frames, device)  # one batched call; None when a frame in it does not decode
    clips, kept = [], []
    for i in range(b):
        clip = decoded[i * t : (i + 1) * t] if decoded is not None else _decoded(frames[i * t : (i + 1) * t], device)
        if clip is None or len({f.shape for f in clip}) != 1:
            continue
        top, left, h, w = crops[i].tolist()
        x = torch.stack(clip)  # [T, 3, H, W]
        if top + h > x.shape[2] or left + w > x.shape[3]:
            continue  # frames smaller than the header the box was drawn for
        x = x[:, :, top : top + h, left : left + w]
        if (h, w) != (size, size) and x.device.type == "cpu":  # the worker's uint8 path: channels-last
            x = F.interpolate(
                x.contiguous(memory_format=torch.channels_last), size=(size, size), mode="bilinear",
                align_corners=False, antialias=True,
            )  # fmt: skip
        elif (h, w) != (size, size):
            x = F.interpolate(x.float(), size=(size, size), mode="bilinear", align_corners=False, antialias=True)
            x = x.round_().clamp_(0, 255).to(torch.uint8)
        clips.append(x.permute(0, 2, 3, 1))
        kept.append(i)
    if not clips:
        raise ValueError(f"no clip of the batch decodes: {b} clips, {b * t} frames")
    return torch.stack(clips), kept


def _decoded(frames: list[torch.Tensor], device: torch.device) -> list[torch.Tensor] | None:
    """RGB ``uint8 [3, H, W]`` per JPEG, decoded on ``device``; None when one of them is not a decodable JPEG
    (a device failure, out of memory included, is raised)."""
    from torchvision.io import ImageReadMode, decode_jpeg

    device_errors = tuple(e for e in (torch.OutOfMemoryError, getattr(torch, "AcceleratorError", None)) if e)
    try:
        return decode_jpeg(frames, mode=ImageReadMode.RGB, device=device)
    except device_errors:
        raise
    except RuntimeError:
        return None


def audio_gain(rng: np.random.Generator, beta: float = 10.0) -> float:
    """Amplitude gain ``Beta(beta, beta) + 0.5`` (mean 1, range 0.5-1.5)."""
    return float(rng.beta(beta, beta) + 0.5)


class ClipTransform:
    """Turns decoded frames ``uint8 [T, H, W, 3]`` into clips ``uint8 [T, S, S, 3]`` for training
    (:meth:`finetune`, :meth:`pretrain`) and evaluation (:meth:`eval`); :func:`to_model_input` finishes them."""

    def __init__(self, size: int, augment: AugmentConfig | None = None) -> None:
        self.size = size
        self.augment = augment or AugmentConfig()
        self._rand_augment = None
        if self.augment.rand_augment:
            from timm.data.auto_augment import rand_augment_transform

            hparams = {
                "translate_const": int(size * 0.45),
                "img_mean": tuple(min(255, round(255 * m)) for m in IMAGENET_DEFAULT_MEAN),
            }
            self._rand_augment = rand_augment_transform(self.augment.rand_augment, hparams)

    def eval(self, frames: np.ndarray) -> torch.Tensor:
        """The whole frames resized: ``uint8 [T, S, S, 3]`` (for :func:`to_model_input`)."""
        return self._crop_resized(frames, 0, 0, frames.shape[1], frames.shape[2]).contiguous()

    def rand_augment(self, frames: np.ndarray, seed: int) -> np.ndarray:
        """The same RandAugment ops and magnitudes on every frame (timm's global RNGs re-seeded per frame)."""
        if self._rand_augment is None:
            return frames
        from PIL import Image

        out = []
        state = random.getstate(), np.random.get_state()
        try:
            for frame in frames:
                random.seed(seed)
                np.random.seed(seed)
                out.append(np.asarray(self._rand_augment(Image.fromarray(frame))))
        finally:
            random.setstate(state[0])
            np.random.set_state(state[1])
        return np.stack(out)

    def _crop_resized(self, frames: np.ndarray, top: int, left: int, h: int, w: int) -> torch.Tensor:
        """Crop ``uint8 [T, H, W, 3]`` frames and resize them to ``uint8 [T, S, S, 3]``."""
        x = torch.from_numpy(np.ascontiguousarray(frames))[:, top : top + h, left : left + w].permute(0, 3, 1, 2)
        if (h, w) != (self.size, self.size):  # [T, 3, h, w] in channels-last memory: torch's uint8 AVX path
            size = (self.size, self.size)
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)
        return x.permute(0, 2, 3, 1)

    def finetune(self, frames: np.ndarray, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Augmented ``uint8 [T, S, S, 3]`` and its erasing box ``int64 [5]`` (for :func:`to_model_input`)."""
        a = self.augment
        if frames.shape[1:3] != (self.size, self.size):  # the official loaders resize to 160 first
            frames = np.stack([cv2.resize(f, (self.size, self.size), interpolation=cv2.INTER_LINEAR) for f in frames])
        seed = int(rng.integers(2**31))
        frames = self.rand_augment(frames, seed)
        top, left, h, w = rrc_params(rng, frames.shape[1], frames.shape[2], a.rrc_scale, a.rrc_ratio)
        x = self._crop_resized(frames, top, left, h, w)
        if rng.random() < a.hflip:
            x = x.flip(2)
        return x.contiguous(), torch.tensor(erase_box(rng, a.erase_prob, self.size, self.size))

    def pretrain_crop(self, rng: np.random.Generator, height: int, width: int) -> tuple[int, int, int, int]:
        """The multi-scale crop ``(top, left, h, w)`` of a pretraining clip of ``height x width`` frames."""
        a = self.augment
        return multi_scale_crop_params(rng, height, width, self.size, a.pretrain_scales, a.pretrain_max_distort)

    def pretrain(self, frames: np.ndarray, rng: np.random.Generator) -> torch.Tensor:
        """Multi-scale crop, resized: ``uint8 [T, S, S, 3]`` (for :func:`to_model_input`)."""
        top, left, h, w = self.pretrain_crop(rng, frames.shape[1], frames.shape[2])
        return self._crop_resized(frames, top, left, h, w).contiguous()
