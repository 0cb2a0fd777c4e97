"""Supervised objectives: AV mixup/cutmix keeps video, audio and labels consistent; CCC loss."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from avf.eval.metrics import ccc
from avf.train.objectives import AVMixup, ccc_loss, classification_loss, regression_loss


def _batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    video = torch.arange(4, dtype=torch.float32).view(4, 1, 1, 1, 1).expand(4, 3, 2, 8, 8).clone()
    audio = torch.arange(4, dtype=torch.float32).view(4, 1, 1, 1).expand(4, 1, 16, 4).clone()
    return video, audio, torch.tensor([0, 1, 2, 3])


def test_mixup_mixes_audio_and_labels_with_the_same_lambda() -> None:
    video, audio, labels = _batch()
    mix = AVMixup(mixup_alpha=0.8, cutmix_alpha=0.0, num_classes=4, smoothing=0.0)
    v, a, t = mix(video, audio, labels, np.random.default_rng(0))
    lam = float(t[0, 0])  # sample 0 is paired with sample 3 (flip)
    assert t[0, 3] == pytest.approx(1 - lam)
    assert v[0].mean() == pytest.approx(0 * lam + 3 * (1 - lam), abs=1e-5)
    assert a[0].mean() == pytest.approx(0 * lam + 3 * (1 - lam), abs=1e-5)
    assert torch.allclose(t.sum(1), torch.ones(4))


def test_cutmix_box_area_sets_lambda_for_video_and_audio() -> None:
    video, audio, labels = _batch()
    mix = AVMixup(mixup_alpha=0.0, cutmix_alpha=1.0, num_classes=4, smoothing=0.0)
    v, a, t = mix(video, audio, labels, np.random.default_rng(3))
    lam = float(t[1, 1])
    share_v = float((v[1] == 2).float().mean())  # sample 1 takes its box from sample 2
    share_a = float((a[1] == 2).float().mean())
    assert share_v == pytest.approx(1 - lam, abs=1e-6)
    assert share_a == pytest.approx(1 - lam, abs=1 / 16 + 1e-6)  # whole fbank frames
    assert torch.equal(v[1, :, 0], v[1, :, 1])  # the same box in every frame


def test_mixup_inactive_and_odd_batch() -> None:
    assert not AVMixup(0.0, 0.0, 4).active
    video, audio, labels = _batch()
    with pytest.raises(ValueError, match="even"):
        AVMixup(0.8, 0.0, 4)(video[:3], audio[:3], labels[:3], np.random.default_rng(0))


def test_losses() -> None:
    logits = torch.tensor([[2.0, 0.0], [0.0, 2.0]])
    hard = classification_loss(logits, torch.tensor([0, 1]), smoothing=0.0)
    soft = classification_loss(logits, torch.tensor([[1.0, 0.0], [0.0, 1.0]]), smoothing=0.0)
    assert hard == pytest.approx(float(soft))
    rng = np.random.default_rng(0)
    p, t = torch.tensor(rng.normal(size=(64, 2))), torch.tensor(rng.normal(size=(64, 2)))
    expected = 1 - np.mean([ccc(p[:, d].numpy(), t[:, d].numpy()) for d in range(2)])
    assert float(ccc_loss(p, t)) == pytest.approx(expected, rel=1e-5)
    assert float(regression_loss(p, t, "mse")) == pytest.approx(float(((p - t) ** 2).mean()))
