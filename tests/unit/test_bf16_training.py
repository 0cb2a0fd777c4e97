"""bf16 training on the CPU: 192 fine-tuning steps of the tiny model through :func:`avf.train.loop.fit` under
``amp: bf16`` follow the fp32 run's loss curve more closely than fp32 runs with other seeds follow each other.

Each clip is a coarse class pattern under coarse clip noise (both upsampled), so the classes are learnable
but not at once: the loss falls over the whole run instead of sitting at chance or at zero. Attention takes
the fp32 path of CPUs without AMX on every machine, so the margin does not depend on the CPU.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from avf.config import Params
from avf.train.loop import StepLogs, fit
from avf.train.sampling import GlobalBatchSampler
from avf.train.session import LocalSession

CLASSES, CLIPS, BATCH, EPOCHS = 4, 32, 2, 12  # 16 steps per epoch: 192 optimizer steps
SEEDS = (0, 1, 2)
Clips = tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # video, audio, labels


def coarse(n: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """``video [n, 3, 16, 160, 160]`` and ``audio [n, 1, 256, 128]`` upsampled from 4 x 5 x 5 and 16 x 8 noise."""
    video = F.interpolate(torch.randn(n, 3, 4, 5, 5, generator=g), size=(16, 160, 160), mode="trilinear")
    return video, F.interpolate(torch.randn(n, 1, 16, 8, generator=g), size=(256, 128), mode="bilinear")


def labelled_clips(seed: int = 0) -> Clips:
    """``CLIPS`` clips of ``CLASSES`` classes: half a class pattern plus the clip's own pattern; labels ``[CLIPS]``."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(CLIPS) % CLASSES
    class_video, class_audio = coarse(CLASSES, g)
    video, audio = coarse(CLIPS, g)
    return video + 0.5 * class_video[labels], audio + 0.5 * class_audio[labels], labels


class ClassifyTask:
    """Stage 3's model (:func:`avf.models.factory.finetune_model`), optimizer and schedule on in-memory clips;
    ``seed`` sets the initial weights and the batch order."""

    layer_decay = 0.75
    select_metric = None
    select_mode = "max"
    select_rule = "last"
    select_epochs = 1

    def __init__(self, amp: str, seed: int, data: Clips) -> None:
        self.params = Params.model_validate(
            {
                "seed": seed,
                "model": {"size": "tiny"},
                "finetune": {"epochs": EPOCHS, "batch_size": BATCH, "base_lr": 0.05, "warmup_epochs": 1,
                             "amp": amp, "log_every": 1},
            }
        )  # fmt: skip
        self.cfg, self.seed, (self.video, self.audio, self.labels) = self.params.finetune, seed, data
        self.sampler = GlobalBatchSampler(CLIPS, BATCH, seed=seed)

    def build_model(self) -> nn.Module:
        from avf.models.factory import finetune_model

        torch.manual_seed(self.seed)
        return finetune_model(self.params.model, CLASSES)

    def steps_per_epoch(self) -> int:
        return CLIPS // BATCH

    def effective_batch(self) -> int:
        return BATCH

    def train_batches(self, epoch: int, start_micro_step: int) -> Iterable[Any]:
        self.sampler.set_epoch(epoch, start_micro_step)
        for idx in self.sampler:
            yield self.video[idx], self.audio[idx], self.labels[idx]

    def train_step(self, model: nn.Module, batch: Any, step: int) -> tuple[torch.Tensor, StepLogs]:
        video, audio, labels = batch
        loss = F.cross_entropy(model(video, audio).float(), labels)
        return loss, {"loss": loss.detach()}

    def evaluate(self, model: nn.Module, epoch: int) -> dict[str, float]:
        return {}


def loss_curve(amp: str, seed: int, data: Clips, root: Path) -> tuple[str, torch.Tensor]:
    """The run's precision and its per-step training loss ``[192]``."""
    state = fit(ClassifyTask(amp, seed, data), LocalSession(root / f"{amp}-{seed}", keep=1))
    losses = torch.tensor([row["train/loss"] for row in state["curve"]])
    assert len(losses) == CLIPS // BATCH * EPOCHS
    return state["precision"], losses


@pytest.mark.slow
def test_bf16_fine_tuning_follows_fp32_within_the_seed_to_seed_spread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from avf.models import layers

    monkeypatch.setattr(layers, "UPCAST_CPU_BF16_ATTENTION", True)
    data = labelled_clips()
    fp32 = {}
    for seed in SEEDS:
        precision, fp32[seed] = loss_curve("off", seed, data, tmp_path)
        assert precision == "fp32"
    precision, bf16 = loss_curve("bf16", SEEDS[0], data, tmp_path)
    assert precision == "bf16"
    assert torch.isfinite(bf16).all()

    def windows(curve: torch.Tensor) -> torch.Tensor:  # mean loss of each 24-step window: [8]
        return curve.view(-1, 24).mean(1)

    ref = windows(fp32[SEEDS[0]])
    assert ref[-1] < 0.7 * ref[0], ref  # the clips are learnable: the loss falls
    spread = torch.stack([windows(c) for c in fp32.values()])
    seed_gap = (spread.max(0).values - spread.min(0).values).mean()
    precision_gap = (windows(bf16) - ref).abs().mean()
    print(f"fp32 windows {ref.tolist()}\nbf16 windows {windows(bf16).tolist()}")
    print(f"mean gap: bf16 vs fp32 (seed {SEEDS[0]}) {precision_gap:.4f}, fp32 seeds {seed_gap:.4f}")
    assert precision_gap < seed_gap, (float(precision_gap), float(seed_gap))
