"""Pictures people look at: confusion matrices and pretraining reconstructions (matplotlib, Agg backend)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from torch import Tensor

from avf.geometry import TUBELET
from avf.utils.io import atomic_path


def _plt():  # type: ignore[no-untyped-def]
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def confusion_png(cm: np.ndarray, class_names: Sequence[str], path: Path, title: str = "") -> Path:
    """Row-normalised confusion matrix with counts; rows are true classes."""
    plt = _plt()
    k = len(class_names)
    norm = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(1.0 + 0.6 * k, 0.8 + 0.55 * k), dpi=120)
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(k), class_names, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(k), class_names, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(k):
        for j in range(k):
            if cm[i, j]:
                ax.text(
                    j,
                    i,
                    str(int(cm[i, j])),
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="white" if norm[i, j] > 0.5 else "black",
                )
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return path


def reconstruction_png(pics: Mapping[str, Tensor], path: Path, max_items: int = 2, tubelet: int = TUBELET[0]) -> Path:
    """One PNG of ``avf.models.viz.reconstruct``'s pictures: per clip, rows of frames (input / masked /
    reconstruction, first frame of each tubelet of ``tubelet`` frames) and a row of log-mel spectrograms."""
    plt = _plt()
    video = pics["video"]  # [B, 3, T, H, W] in [0, 1]
    items = min(max_items, video.shape[0])
    frames = list(range(0, video.shape[2], tubelet))
    cols = len(frames)
    fig = plt.figure(figsize=(1.4 * cols, 1.5 * 4 * items))
    grid = fig.add_gridspec(4 * items, 3 * cols)
    titles = (("video", "input"), ("video_masked", "masked"), ("video_recon", "reconstruction"))
    specs = (("audio", "fbank"), ("audio_masked", "masked fbank"), ("audio_recon", "reconstructed fbank"))
    for i in range(items):
        for r, (key, label) in enumerate(titles):
            for j, f in enumerate(frames):
                ax = fig.add_subplot(grid[4 * i + r, 3 * j : 3 * j + 3])
                ax.imshow(pics[key][i, :, f].permute(1, 2, 0).numpy())
                ax.set_axis_off()
                if j == 0:
                    ax.set_title(f"clip {i}: {label}", fontsize=7, loc="left")
        lo, hi = float(pics["audio"][i].min()), float(pics["audio"][i].max())
        for s, (key, label) in enumerate(specs):
            ax = fig.add_subplot(grid[4 * i + 3, s * cols : (s + 1) * cols])
            ax.imshow(pics[key][i, 0].T.numpy(), origin="lower", aspect="auto", vmin=lo, vmax=hi, cmap="magma")
            ax.set_title(label, fontsize=7)
            ax.set_axis_off()
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=80)
    plt.close(fig)
    return path
