from __future__ import annotations

from pathlib import Path

import pytest

from avf.data.adapters import get_adapter
from tests.support.fixtures_datasets import make_iemocap
from tests.unit.adapters.helpers import assert_clip_ids_safe, by_id, reasons


def test_four_classes_with_excited_merged_and_session_folds(tmp_path: Path) -> None:
    result = get_adapter("iemocap").scan(make_iemocap(tmp_path))
    clips = by_id(result)
    # ang 0, hap 1, neu 2, sad 3; fru / xxx dropped; exc -> hap
    assert {k: (c.label_name, c.label, c.test_fold, c.subject) for k, c in clips.items()} == {
        "Ses01F_impro01_F000": ("neu", 2, 1, "Ses01F"),
        "Ses01F_impro01_M000": ("hap", 1, 1, "Ses01M"),
        "Ses01F_impro01_F002": ("ang", 0, 1, "Ses01F"),
        "Ses05M_impro01_F000": ("neu", 2, 5, "Ses05F"),
        "Ses05M_impro01_M000": ("hap", 1, 5, "Ses05M"),
        "Ses05M_impro01_F002": ("sad", 3, 5, "Ses05F"),
    }
    male = clips["Ses01F_impro01_M000"]
    assert male.video_path.name == "Ses01F_impro01.avi" and male.audio_path.name == "Ses01F_impro01_M000.wav"
    assert (male.extra["start"], male.extra["end"], male.extra["crop"]) == (1.0, 1.6, "right")
    assert clips["Ses01F_impro01_F000"].extra["crop"] == "left"
    # in a Ses05M dialog the male actor sits on the left
    assert clips["Ses05M_impro01_M000"].extra["crop"] == "left"
    assert clips["Ses05M_impro01_F000"].extra["crop"] == "right"
    assert "dialog video missing" in reasons(result)["Ses01F_script01_1.txt"]
    assert_clip_ids_safe(result)


def test_options(tmp_path: Path) -> None:
    root = make_iemocap(tmp_path)
    no_exc = by_id(get_adapter("iemocap", merge_excited=False).scan(root))
    assert "Ses01F_impro01_M000" not in no_exc and len(no_exc) == 4
    with pytest.raises(ValueError, match="female_side is not supported"):
        get_adapter("iemocap", female_side="right")


def test_root_without_evaluations_raises(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="EmoEvaluation"):
        get_adapter("iemocap").scan(tmp_path)
