"""Tiny fine-tuned models and videos for the prediction tests (random weights, no training)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from avf.artifacts.cards import export_model
from avf.config.data import AudioConfig, ClipConfig, FaceConfig
from avf.models import create_model
from tests.support import media

CLASSES = ("neutral", "happy", "sad")


def make_model_dir(
    out: Path,
    outputs: Sequence[str] = CLASSES,
    task: str = "classification",
    seed: int = 0,
    head_scale: float = 3.0,
    preprocessing: bool = True,
    clip: ClipConfig | None = None,
) -> Path:
    """A stage-output folder (``model.safetensors`` + ``card.json``) of a random-weight tiny model.

    The head is scaled up by ``head_scale`` so that probabilities differ visibly between windows.
    Without ``preprocessing`` the card looks like one written before cards recorded it.
    """
    torch.manual_seed(seed)
    model = create_model("avf_mae_pp_tiny", num_classes=len(outputs))
    with torch.no_grad():
        model.head.weight.mul_(head_scale)
    card: dict[str, Any] = {
        "stage": "finetune",
        "kind": "finetune",
        "model": {"size": "tiny", "lg_fourth_attn": True, "iavcl": True},
        "datasets": {
            "demo": {
                "task": task,
                "num_outputs": len(outputs),
                "classes": list(outputs) if task == "classification" else [],
                "targets": list(outputs) if task == "regression" else [],
            }
        },
        "fold": 1,
        "metrics": {},
        "mlflow_run_id": None,
    }
    if preprocessing:
        card["preprocessing"] = {
            "face": FaceConfig().model_dump(mode="json"),
            "clip": (clip or ClipConfig()).model_dump(mode="json"),
            "audio": AudioConfig().model_dump(mode="json"),
        }
    export_model(out, {k: v.contiguous() for k, v in model.state_dict().items()}, card)
    return out


def write_gap_video(path: Path, seconds: float = 6.0, fps: float = 25.0, audio: bool = True) -> Path:
    """A face video whose middle third shows no face (a colour pattern instead)."""
    n = round(seconds * fps)
    face = media.face_frames(n, face="astronaut")
    blank = media.face_frames(n, face=None)
    third = n // 3
    frames = face[:third] + blank[third : 2 * third] + face[2 * third :]
    wave = media.tone_schedule((300.0, 900.0), seconds, 16000) if audio else None
    return media.write_video(path, frames, fps=fps, audio=wave, sample_rate=16000)


def probabilities(record: dict[str, Any]) -> np.ndarray:
    return np.array(list(record["probabilities"].values()), dtype=np.float64)
