"""Pictures people look at: confusion matrices and training curves (matplotlib, Agg backend)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

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


def curves_png(
    curves: dict[str, tuple[Sequence[float], Sequence[float]]], path: Path, title: str = "", ylabel: str = "loss"
) -> Path:
    """Several ``name -> (x, y)`` lines on one axis."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=120)
    for name, (x, y) in curves.items():
        ax.plot(x, y, label=name)
    ax.set_xlabel("step")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    if len(curves) > 1:
        ax.legend(fontsize=7)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return path
