"""Metrics of the AVF-MAE++ protocols, on numpy arrays (scikit-learn where it has them).

Classification: WAR (overall accuracy), UAR (mean per-class recall), macro F1 (UF1 in the
micro-expression literature) and weighted F1. Regression: PCC and CCC per target, MAE/MSE.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, recall_score

CLASSIFICATION_METRICS = ("uar", "war", "macro_f1", "weighted_f1")


def classification_metrics(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> dict[str, float]:
    """Metrics in percent over ``num_classes`` labels (classes absent from ``y_true`` don't count in UAR)."""
    y_true = np.asarray(y_true, dtype=np.int64)
    y_pred = np.asarray(y_pred, dtype=np.int64)
    if y_true.size == 0:
        raise ValueError("no samples to evaluate")
    present = np.unique(y_true)
    return {
        "war": 100.0 * float(accuracy_score(y_true, y_pred)),
        "uar": 100.0 * float(recall_score(y_true, y_pred, labels=present, average="macro", zero_division=0)),
        "macro_f1": 100.0 * float(f1_score(y_true, y_pred, labels=present, average="macro", zero_division=0)),
        "weighted_f1": 100.0 * float(f1_score(y_true, y_pred, labels=present, average="weighted", zero_division=0)),
    }


def confusion(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """Confusion matrix ``[K, K]`` (rows: true class, columns: predicted)."""
    return confusion_matrix(y_true, y_pred, labels=list(range(num_classes)))


def pcc(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson correlation of two 1-D arrays (0 when either is constant)."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    sx, sy = x.std(), y.std()
    if sx == 0 or sy == 0:
        return 0.0
    return float(((x - x.mean()) * (y - y.mean())).mean() / (sx * sy))


def ccc(x: np.ndarray, y: np.ndarray) -> float:
    """Lin's concordance correlation coefficient of predictions ``x`` and targets ``y``."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    cov = ((x - x.mean()) * (y - y.mean())).mean()
    denom = x.var() + y.var() + (x.mean() - y.mean()) ** 2
    return float(2 * cov / denom) if denom > 0 else 0.0


def regression_metrics(pred: np.ndarray, target: np.ndarray, names: Sequence[str]) -> dict[str, float]:
    """Per-target PCC/CCC (and their means) plus MAE/MSE; ``pred``/``target`` are ``[N, D]``."""
    pred = np.asarray(pred, dtype=np.float64).reshape(len(pred), -1)
    target = np.asarray(target, dtype=np.float64).reshape(len(target), -1)
    if pred.shape != target.shape or pred.shape[0] == 0:
        raise ValueError(f"prediction shape {pred.shape} does not match targets {target.shape}")
    out: dict[str, float] = {}
    for d, name in enumerate(names):
        out[f"pcc_{name}"] = pcc(pred[:, d], target[:, d])
        out[f"ccc_{name}"] = ccc(pred[:, d], target[:, d])
    out["pcc"] = float(np.mean([out[f"pcc_{n}"] for n in names]))
    out["ccc"] = float(np.mean([out[f"ccc_{n}"] for n in names]))
    out["mae"] = float(np.abs(pred - target).mean())
    out["mse"] = float(((pred - target) ** 2).mean())
    return out


def mean_over_folds(per_fold: Sequence[dict[str, float]]) -> dict[str, float]:
    """The papers' protocol: metrics averaged over folds (not pooled)."""
    keys = set(per_fold[0])
    return {k: float(np.mean([m[k] for m in per_fold])) for k in sorted(keys)}
