from __future__ import annotations

from pathlib import Path

import pytest

from avf.data.adapters import get_adapter
from tests.support.fixtures_datasets import make_ravdess, make_ravdess_demo_like
from tests.unit.adapters.helpers import assert_clip_ids_safe, by_id, reasons


def test_auto_prefers_full_av_and_pairs_02_with_03(tmp_path: Path) -> None:
    root = make_ravdess(tmp_path)
    result = get_adapter("ravdess").scan(root)
    clips = by_id(result)
    assert sorted(clips) == [
        "01-01-01-01-01-01",
        "01-02-02-02-02-24",
        "01-05-02-02-01-04",
        "01-08-01-01-02-05",
    ]
    full = clips["01-01-01-01-01-01"]
    assert full.video_path.name == "01-01-01-01-01-01-01.mp4" and full.audio_path is None
    assert full.extra["source"] == "av"
    angry = clips["01-05-02-02-01-04"]
    assert angry.video_path.name == "02-01-05-02-02-01-04.mp4"
    assert angry.audio_path is not None and angry.audio_path.name == "03-01-05-02-02-01-04.wav"
    assert angry.audio_path.parent.name == "Actor_04"  # raw tree, not audio_16k/
    golden = {  # label = emotion - 1, fold = ceil(actor / 4)
        "01-01-01-01-01-01": (0, "neutral", 1, "Actor_01"),
        "01-05-02-02-01-04": (4, "angry", 1, "Actor_04"),
        "01-08-01-01-02-05": (7, "surprised", 2, "Actor_05"),
        "01-02-02-02-02-24": (1, "calm", 6, "Actor_24"),
    }
    assert {k: (c.label, c.label_name, c.test_fold, c.subject) for k, c in clips.items()} == golden
    assert_clip_ids_safe(result)


def test_problems_are_reported_and_song_is_silently_excluded(tmp_path: Path) -> None:
    result = get_adapter("ravdess").scan(make_ravdess(tmp_path))
    why = reasons(result)
    assert "malformed" in why["02-01-05-02.mp4"]
    assert "Actor_04" in why["02-01-06-01-01-01-07.mp4"]
    assert "emotion 09" in why["02-01-09-01-01-01-04.mp4"]
    assert "03-01-03-01-01-01-05.wav" in why["02-01-03-01-01-01-05.mp4"]
    assert not any("02-02-03" in p.path for p in result.problems)
    assert len(result.problems) == 4


def test_video_plus_audio_source_uses_hicmae_pairing(tmp_path: Path) -> None:
    result = get_adapter("ravdess", source="video+audio").scan(make_ravdess(tmp_path))
    first = by_id(result)["01-01-01-01-01-01"]
    assert first.video_path.name.startswith("02-") and first.audio_path.name.startswith("03-")


def test_av_source_reports_recordings_without_full_av(tmp_path: Path) -> None:
    result = get_adapter("ravdess", source="av").scan(make_ravdess(tmp_path))
    assert list(by_id(result)) == ["01-01-01-01-01-01"]
    assert sum("full-AV" in p.reason for p in result.problems) == 4


def test_include_song(tmp_path: Path) -> None:
    result = get_adapter("ravdess", include_song=True).scan(make_ravdess(tmp_path))
    song = by_id(result)["02-03-01-01-01-02"]
    assert song.extra["vocal_channel"] == "song" and song.label == 2 and song.test_fold == 1


def test_reads_the_demo_generator_layout_unchanged(tmp_path: Path) -> None:
    result = get_adapter("ravdess").scan(make_ravdess_demo_like(tmp_path))
    assert len(result.clips) == 48 and result.problems == []
    folds = {c.subject: c.test_fold for c in result.clips}
    assert [folds[f"Actor_{a:02d}"] for a in (1, 4, 5, 8, 9, 20, 21, 24)] == [1, 1, 2, 2, 3, 5, 6, 6]
    assert all(c.audio_path is None and c.extra["source"] == "av" for c in result.clips)


def test_unusable_root_raises(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="missing"):
        get_adapter("ravdess").scan(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="Actor_NN"):
        get_adapter("ravdess").scan(tmp_path / "empty")


def test_bad_option_is_rejected() -> None:
    with pytest.raises(ValueError, match="source"):
        get_adapter("ravdess", source="both")


def test_list_clip_id_maps_hicmae_paths() -> None:
    adapter = get_adapter("ravdess")
    assert adapter.list_clip_id("/x/RAVDESS/face_aligned/Actor_01/02-01-01-01-01-01-01") == "01-01-01-01-01-01"
