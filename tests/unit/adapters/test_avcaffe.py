from __future__ import annotations

from pathlib import Path

import pytest

from avf.data.adapters import get_adapter
from tests.support.fixtures_datasets import make_avcaffe
from tests.unit.adapters.helpers import assert_clip_ids_safe, by_id, reasons


def test_arousal_split_and_video_level_key(tmp_path: Path) -> None:
    result = get_adapter("avcaffe").scan(make_avcaffe(tmp_path))
    clips = by_id(result)
    assert {k: (c.label, c.official_split, c.extra["aggregate_key"]) for k, c in clips.items()} == {
        "aiim001_task_1_1": (0, "test", "aiim001_task_1"),  # Excited 0; aiim001 is a val participant
        "aiim001_task_1_2": (0, "test", "aiim001_task_1"),
        "aiim001_task_1_3": (0, "test", "aiim001_task_1"),
        "aiim003_task_2_1": (4, "train", "aiim003_task_2"),  # Calm 4
    }
    assert clips["aiim001_task_1_3"].extra["no_audio"] is True
    assert "no_audio" not in clips["aiim001_task_1_1"].extra
    why = reasons(result)
    assert "neither" in why["aiim005_task_1_1.avi"]
    assert "no arousal label" in why["aiim003_task_3_1.avi"]
    assert "inside" in why["aiim003_task_1_9.avi"]
    assert_clip_ids_safe(result)


def test_valence_and_drop_policy(tmp_path: Path) -> None:
    adapter = get_adapter("avcaffe", target="valence", no_audio="drop")
    result = adapter.scan(make_avcaffe(tmp_path))
    assert adapter.classes[1] == "Pleased"
    assert {k: c.label for k, c in by_id(result).items()} == {
        "aiim001_task_1_1": 1,
        "aiim001_task_1_2": 1,
        "aiim003_task_2_1": 4,
    }
    assert any("'Meh'" in p.reason for p in result.problems)
    assert "dropped" in reasons(result)["aiim001_task_1_3.avi"]


def test_documented_val_participants_without_info(tmp_path: Path) -> None:
    root = make_avcaffe(tmp_path)
    for name in ("val.txt", "train.txt"):
        (root / "info" / name).unlink()
    splits = {c.subject: c.official_split for c in get_adapter("avcaffe").scan(root).clips}
    assert splits == {"aiim001": "test", "aiim003": "train", "aiim005": "train"}


def test_missing_ground_truth_raises(tmp_path: Path) -> None:
    root = make_avcaffe(tmp_path)
    (root / "ground_truths" / "arousal.txt").unlink()
    with pytest.raises(FileNotFoundError, match=r"arousal\.txt"):
        get_adapter("avcaffe").scan(root)
