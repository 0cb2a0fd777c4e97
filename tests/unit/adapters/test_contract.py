"""Every registered adapter, on its fixture, honours the RawClip contract."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from avf.data.adapters import get_adapter, list_adapters
from avf.data.adapters.base import RawClip
from avf.data.adapters.common import ScanBuilder
from tests.support import fixtures_datasets as F
from tests.unit.adapters.helpers import assert_clip_ids_safe

CASES: list[tuple[str, dict[str, Any], Callable[[Path], Path]]] = [
    ("ravdess", {}, F.make_ravdess),
    ("ravdess", {"source": "video+audio", "include_song": True}, F.make_ravdess),
    ("cremad", {}, F.make_cremad),
    ("cremad", {"classes": "4", "audio": "auto", "exclusions": "none"}, F.make_cremad),
    ("mafw", {}, F.make_mafw),
    ("mafw", {"classes": 43, "video": "frames"}, F.make_mafw),
    ("dfew", {}, F.make_dfew),
    ("mer2023", {}, F.make_mer2023),
    ("mer2024", {}, F.make_mer2024_release),
    ("mer2024", {}, F.make_mer2024_avf),
    ("mer2024_unlabeled", {}, F.make_mer2024_release),
    ("msp_improv", {}, F.make_msp_improv),
    ("iemocap", {}, F.make_iemocap),
    ("avcaffe", {"target": "valence"}, F.make_avcaffe),
    ("werewolf_xl", {}, F.make_werewolf_xl),
    ("casme2", {}, F.make_casme2),
    ("samm", {}, F.make_samm),
    ("smic", {}, F.make_smic),
    ("casme3", {"classes": 7}, F.make_casme3),
    ("mmew", {}, F.make_mmew),
    ("voxceleb2", {}, F.make_voxceleb2),
    ("csv", {"file": "clips.csv", "folds": 3}, F.make_user_csv),
    ("csv", {"file": "va.csv", "targets": "arousal,valence"}, F.make_user_csv),
]


def test_every_registered_adapter_has_a_fixture_case() -> None:
    assert set(list_adapters()) - {"folder"} <= {name for name, _, _ in CASES}


@pytest.mark.parametrize(("name", "options", "make"), CASES, ids=[f"{n}-{i}" for i, (n, _, _) in enumerate(CASES)])
def test_contract(tmp_path: Path, name: str, options: dict[str, Any], make: Callable[[Path], Path]) -> None:
    adapter = get_adapter(name, **options)
    result = adapter.scan(make(tmp_path))
    assert result.clips, "the fixture yields usable clips"
    assert result.problems, "every fixture carries negative cases"
    assert_clip_ids_safe(result)
    for problem in result.problems:
        assert problem.path and problem.reason
    for clip in result.clips:
        assert clip.dataset == name and clip.subject
        assert clip.video_path.exists()
        assert clip.video_path.is_dir() == bool(clip.extra.get("frames")), clip.clip_id
        assert clip.audio_path is None or clip.audio_path.is_file()
        if adapter.task == "classification":
            assert clip.label is not None and 0 <= clip.label < adapter.num_classes
            assert clip.label_name == adapter.classes[clip.label]
        elif adapter.task == "regression":
            assert clip.targets is not None and len(clip.targets) == len(adapter.target_names)
        if adapter.task != "none":
            if adapter.num_folds:
                assert clip.test_fold is not None and 1 <= clip.test_fold <= adapter.num_folds
            else:
                assert clip.official_split in ("train", "val", "test")


def test_scan_builder_rejects_unsafe_and_duplicate_ids(tmp_path: Path) -> None:
    out = ScanBuilder("x")
    clip = RawClip(clip_id="a_1", dataset="x", subject="s", video_path=tmp_path / "a.mp4")
    assert out.add(clip)
    assert not out.add(RawClip(clip_id="a_1", dataset="x", subject="s", video_path=tmp_path / "b.mp4"))
    assert not out.add(RawClip(clip_id="a b/1", dataset="x", subject="s", video_path=tmp_path / "c.mp4"))
    reasons = [p.reason for p in out.result().problems]
    assert "duplicate clip id 'a_1'" in reasons[0] and "a.mp4" in reasons[0]
    assert "unsafe clip id" in reasons[1]
    assert [c.video_path.name for c in out.result().clips] == ["a.mp4"]


def test_duplicate_recordings_across_release_folders_are_reported(tmp_path: Path) -> None:
    root = F.make_ravdess(tmp_path)
    F.touch(root / "Video_Speech_Actor_04" / "Actor_04" / "02-01-05-02-02-01-04.mp4")
    result = get_adapter("ravdess").scan(root)
    assert any("same recording" in p.reason for p in result.problems)
    assert len([c for c in result.clips if c.clip_id == "01-05-02-02-01-04"]) == 1


def test_unknown_adapter_and_bad_options() -> None:
    with pytest.raises(KeyError, match="unknown dataset adapter"):
        get_adapter("nope")
    with pytest.raises(ValueError, match="classes"):
        get_adapter("cremad", classes=5)
    with pytest.raises(ValueError, match="boolean"):
        get_adapter("mafw", require_audio="maybe")
