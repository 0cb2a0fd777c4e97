"""Evaluation metrics against scikit-learn / scipy and hand-computed cases; view averaging."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import pearsonr
from sklearn.metrics import balanced_accuracy_score, f1_score

from avf.config.data import AudioConfig, ClipConfig
from avf.eval.metrics import ccc, classification_metrics, confusion, mean_over_folds, pcc, regression_metrics
from avf.eval.predict import predict_views, score


def test_classification_metrics_match_sklearn() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 5, 200)
    p = np.where(rng.random(200) < 0.6, y, rng.integers(0, 5, 200))
    m = classification_metrics(y, p, 5)
    assert m["war"] == pytest.approx(100 * (y == p).mean())
    assert m["uar"] == pytest.approx(100 * balanced_accuracy_score(y, p))
    assert m["macro_f1"] == pytest.approx(100 * f1_score(y, p, average="macro"))
    assert m["weighted_f1"] == pytest.approx(100 * f1_score(y, p, average="weighted"))


def test_uar_hand_case_and_absent_classes() -> None:
    # class 0: 2/2 right, class 1: 1/2 right, class 2 never occurs in the labels.
    y, p = np.array([0, 0, 1, 1]), np.array([0, 0, 1, 2])
    m = classification_metrics(y, p, 3)
    assert m["uar"] == pytest.approx(75.0)
    assert m["war"] == pytest.approx(75.0)
    cm = confusion(y, p, 3)
    assert cm.tolist() == [[2, 0, 0], [0, 1, 1], [0, 0, 0]]
    with pytest.raises(ValueError, match="no samples"):
        classification_metrics(np.array([]), np.array([]), 3)


def test_pcc_ccc_against_scipy_and_formula() -> None:
    rng = np.random.default_rng(1)
    t = rng.normal(size=300)
    x = 0.7 * t + rng.normal(scale=0.5, size=300) + 0.3
    assert pcc(x, t) == pytest.approx(pearsonr(x, t)[0], rel=1e-9)
    expected = 2 * np.cov(x, t, bias=True)[0, 1] / (x.var() + t.var() + (x.mean() - t.mean()) ** 2)
    assert ccc(x, t) == pytest.approx(expected, rel=1e-9)
    assert ccc(t, t) == pytest.approx(1.0)
    assert ccc(t + 1.0, t) < 1.0 < 1.0 + pcc(t + 1.0, t)  # a shift lowers CCC, not PCC
    assert pcc(np.ones(5), np.arange(5)) == 0.0
    m = regression_metrics(np.stack([x, t], 1), np.stack([t, t], 1), ["a", "b"])
    assert m["ccc_b"] == pytest.approx(1.0) and m["ccc"] == pytest.approx((expected + 1) / 2)
    assert m["mae"] == pytest.approx(np.abs(x - t).mean() / 2)


def test_mean_over_folds() -> None:
    assert mean_over_folds([{"uar": 10.0, "war": 20.0}, {"uar": 30.0, "war": 40.0}]) == {"uar": 20.0, "war": 30.0}


class _Views(torch.utils.data.Dataset):
    """Clips whose two views point to different classes; the average decides."""

    clip = ClipConfig(num_frames=2, image_size=32, test_views=2)  # what the shared-memory budget reads
    audio = AudioConfig()

    def __len__(self) -> int:
        return 3

    def __getitem__(self, i: int) -> dict:
        # uint8 [V, T, S, S, 3]; after normalisation view 0 says class 0 by a logit margin of 1 + i, view 1
        # says class 1 by 2.5 (the levels are those margins through the ImageNet mean and std)
        video = torch.zeros(2, 2, 4, 4, 3, dtype=torch.uint8)
        video[0, ..., 0] = (63, 122, 180)[i]
        video[1, ..., 1] = 138
        return {"video": video, "audio": torch.zeros(2, 1, 4, 4), "label": torch.tensor(i % 2), "key": f"k{i}"}


class _Logits(torch.nn.Module):
    def forward(self, video: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        return video.mean(dim=(2, 3, 4))[:, :2]


def test_views_are_averaged_as_probabilities() -> None:
    out = predict_views(_Logits(), _Views(), range(3), torch.device("cpu"), batch_size=2)
    assert out["scores"].shape == (3, 2) and np.allclose(out["scores"].sum(1), 1.0)
    assert list(out["keys"]) == ["k0", "k1", "k2"]
    # view 1 always says class 1 (logit 2.5); view 0 says class 0 with logit 1 + i: averaged probabilities
    assert out["scores"].argmax(1).tolist() == [1, 1, 0]
    assert score(out, "classification", 2)["war"] == pytest.approx(100 * 2 / 3)
    # decoding in 2 DataLoader worker processes gives the same outputs in the same order
    parallel = predict_views(_Logits(), _Views(), range(3), torch.device("cpu"), batch_size=2, num_workers=2)
    assert list(parallel["keys"]) == ["k0", "k1", "k2"] and np.array_equal(parallel["scores"], out["scores"])
    # evaluating between training epochs must not move the training's random stream
    torch.manual_seed(7)
    expected = torch.rand(3)
    torch.manual_seed(7)
    predict_views(_Logits(), _Views(), range(3), torch.device("cpu"), batch_size=2)
    assert torch.equal(torch.rand(3), expected)


def test_eval_metrics_param_selects_what_is_reported() -> None:
    import pydantic

    from avf.config.train import EvalConfig
    from avf.eval.run import select_metrics

    cls = {"uar": 50.0, "war": 60.0, "macro_f1": 40.0, "weighted_f1": 45.0}
    reg = {"pcc_valence": 0.5, "ccc_valence": 0.4, "pcc": 0.5, "ccc": 0.4, "mae": 0.2, "mse": 0.1}
    assert select_metrics(cls, EvalConfig().metrics) == cls  # the default reports every metric of the task
    assert select_metrics(reg, EvalConfig().metrics) == reg
    assert select_metrics(cls, ("uar",)) == {"uar": 50.0}
    assert select_metrics(reg, ("ccc", "mse")) == {"ccc_valence": 0.4, "ccc": 0.4, "mse": 0.1}
    with pytest.raises(pydantic.ValidationError, match="uarr"):
        EvalConfig(metrics=("uarr",))
    with pytest.raises(pydantic.ValidationError, match="empty"):
        EvalConfig(metrics=())
