from __future__ import annotations

from pathlib import Path

import pytest

from avf.data.adapters import get_adapter
from tests.support.fixtures_datasets import MER2024_LABELS, make_mer2023, make_mer2024_avf, make_mer2024_release
from tests.unit.adapters.helpers import assert_clip_ids_safe, by_id, reasons


def test_mer2023_splits_labels_and_mixed_extensions(tmp_path: Path) -> None:
    result = get_adapter("mer2023").scan(make_mer2023(tmp_path))
    clips = by_id(result)
    # MERTools order: neutral 0, angry 1, happy 2, sad 3, worried 4, surprise 5
    assert {k: (c.label, c.official_split) for k, c in clips.items()} == {
        "sample_00000000": (2, "train"),
        "sample_00000007": (0, "train"),
        "sample_00000011": (1, "train"),
        "sample_00000012": (3, "train"),
        "sample_00000013": (4, "train"),
        "sample_00000014": (5, "train"),
        "sample_00000021": (3, "test"),
        "sample_00000022": (4, "test"),
    }
    assert clips["sample_00000007"].video_path.suffix == ".avi"
    assert clips["sample_00000000"].extra["valence"] == pytest.approx(2.3)
    why = reasons(result)
    assert "unknown label 'bored'" in why["sample_00000015"]
    assert "video missing" in why["sample_00000016"]
    assert_clip_ids_safe(result)


def test_mer2023_other_test_set_and_face_frames(tmp_path: Path) -> None:
    root = make_mer2023(tmp_path)
    result = get_adapter("mer2023", test_set="test2").scan(root)
    assert any("test2-label.csv" in p.path for p in result.problems)
    assert {c.official_split for c in result.clips} == {"train"}
    frames = by_id(get_adapter("mer2023", video="face_aligned").scan(root))["sample_00000000"]
    assert frames.video_path.parent.name == "face_aligned" and frames.extra["frames"] is True


def test_mer2024_release_generates_seeded_stratified_folds(tmp_path: Path) -> None:
    root = make_mer2024_release(tmp_path)
    result = get_adapter("mer2024").scan(root)
    clips = by_id(result)
    # AVF-MAE order: worried 0, happy 1, neutral 2, angry 3, surprise 4, sad 5
    assert {k: c.label for k, c in clips.items()} == {
        "sample_00000000": 1,
        "sample_00000001": 0,
        "sample_00000002": 2,
        "sample_00000003": 3,
        "sample_00000004": 4,
        "sample_00000005": 5,
    }
    folds = {k: c.test_fold for k, c in clips.items()}
    assert all(1 <= f <= 5 for f in folds.values()) and len(set(folds.values())) == 5
    assert folds == {k: c.test_fold for k, c in by_id(get_adapter("mer2024").scan(root)).items()}
    why = reasons(result)
    assert "'bored'" in why["label-disdim.csv"] and "video missing" in why["sample_00000007"]
    other = {k: c.test_fold for k, c in by_id(get_adapter("mer2024", seed=7).scan(root)).items()}
    assert sorted(other.values()) == sorted(folds.values())


def test_mer2024_avf_mae_tree_uses_its_fold_lists(tmp_path: Path) -> None:
    result = get_adapter("mer2024").scan(make_mer2024_avf(tmp_path))
    folds = {k: c.test_fold for k, c in by_id(result).items()}
    names = list(MER2024_LABELS)
    assert folds == {n: i % 5 + 1 for i, n in enumerate(names) if n != "sample_00000005"}
    assert "audio missing" in reasons(result)["sample_00000005"]
    assert all(c.extra["frames"] for c in result.clips)


def test_mer2024_unlabeled_pool(tmp_path: Path) -> None:
    adapter = get_adapter("mer2024_unlabeled")
    result = adapter.scan(make_mer2024_release(tmp_path))
    assert adapter.task == "none"
    assert sorted(by_id(result)) == ["sample_00100000", "sample_00100001"]
    assert "malformed" in reasons(result)["clip 1.mp4"]


def test_unusable_roots(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"train-label\.csv"):
        get_adapter("mer2023").scan(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"label-disdim\.csv"):
        get_adapter("mer2024").scan(tmp_path)
