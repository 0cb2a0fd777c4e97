from __future__ import annotations

from pathlib import Path

import pytest

from avf.data.adapters import get_adapter
from avf.data.adapters.cremad import fold_of_actor
from tests.support.fixtures_datasets import make_cremad, make_cremad_demo_like
from tests.unit.adapters.helpers import assert_clip_ids_safe, by_id, reasons


def test_folds_and_labels_match_the_golden_values(tmp_path: Path) -> None:
    result = get_adapter("cremad").scan(make_cremad(tmp_path))
    clips = by_id(result)
    golden = {
        "1001_DFA_ANG_XX": (0, 1),
        "1001_IEO_HAP_HI": (3, 1),
        "1001_IEO_SAD_LO": (5, 1),
        "1018_ITS_NEU_XX": (4, 1),
        "1019_WSI_DIS_XX": (1, 2),
        "1072_TSI_FEA_XX": (2, 4),
        "1073_MTI_SAD_XX": (5, 5),
        "1091_IWL_ANG_XX": (0, 5),
    }
    assert {k: (c.label, c.test_fold) for k, c in clips.items()} == golden
    first = clips["1001_DFA_ANG_XX"]
    assert first.subject == "1001" and first.label_name == "ANG"
    assert first.video_path.name == "1001_DFA_ANG_XX.flv"
    assert first.audio_path == first.video_path.parent.parent / "AudioWAV" / "1001_DFA_ANG_XX.wav"
    assert first.extra["sex"] == "Male" and first.extra["level"] == "XX"
    assert_clip_ids_safe(result)


def test_fold_rule_boundaries() -> None:
    assert [fold_of_actor(a) for a in (1001, 1018, 1019, 1036, 1037, 1054, 1055, 1072, 1073, 1091)] == [
        1,
        1,
        2,
        2,
        3,
        3,
        4,
        4,
        5,
        5,
    ]
    assert sum(fold_of_actor(a) == 5 for a in range(1001, 1092)) == 19


def test_problems(tmp_path: Path) -> None:
    why = reasons(get_adapter("cremad").scan(make_cremad(tmp_path)))
    assert "excluded list" in why["1076_MTI_NEU_XX.flv"]
    assert "excluded list" in why["1040_ITH_SAD_XX.flv"]
    assert "malformed" in why["1002_DFA_ANG.flv"]
    assert "unknown" in why["1003_DFA_XYZ_XX.flv"]
    assert "1091" in why["1099_DFA_ANG_XX.flv"]
    assert len(why) == 5


def test_missing_audio_is_skipped_or_kept_with_own_track(tmp_path: Path) -> None:
    root = make_cremad(tmp_path)
    strict = get_adapter("cremad", exclusions="broken").scan(root)
    assert "1040_ITH_SAD_XX" not in by_id(strict)
    assert "audio missing" in reasons(strict)["1040_ITH_SAD_XX.flv"]
    lenient = get_adapter("cremad", exclusions="broken", audio="auto").scan(root)
    clip = by_id(lenient)["1040_ITH_SAD_XX"]
    assert clip.audio_path is None and clip.extra["audio_source"] == "video" and clip.test_fold == 3
    assert "kept" in reasons(lenient)["1040_ITH_SAD_XX.flv"]
    everything = get_adapter("cremad", exclusions="none").scan(root)
    assert "1076_MTI_NEU_XX" in by_id(everything)


def test_four_class_variant_reindexes(tmp_path: Path) -> None:
    adapter = get_adapter("cremad", classes=4)
    assert adapter.classes == ("ANG", "HAP", "NEU", "SAD") and adapter.num_classes == 4
    clips = by_id(adapter.scan(make_cremad(tmp_path)))
    assert {k: c.label for k, c in clips.items()} == {
        "1001_DFA_ANG_XX": 0,
        "1001_IEO_HAP_HI": 1,
        "1001_IEO_SAD_LO": 3,
        "1018_ITS_NEU_XX": 2,
        "1073_MTI_SAD_XX": 3,
        "1091_IWL_ANG_XX": 0,
    }


def test_reads_the_demo_generator_layout(tmp_path: Path) -> None:
    result = get_adapter("cremad").scan(make_cremad_demo_like(tmp_path))
    assert len(result.clips) == 24 and result.problems == []
    assert {c.test_fold for c in result.clips} == {1}


def test_root_without_videoflash_raises(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="VideoFlash"):
        get_adapter("cremad").scan(tmp_path)
