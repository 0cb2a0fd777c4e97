from __future__ import annotations

from pathlib import Path

import pytest

from avf.data.adapters import get_adapter
from tests.support.fixtures_datasets import make_mafw
from tests.unit.adapters.helpers import assert_clip_ids_safe, by_id, reasons


def test_single_set_folds_and_labels(tmp_path: Path) -> None:
    result = get_adapter("mafw").scan(make_mafw(tmp_path))
    golden = {  # anger 0 ... contempt 7, helplessness 9, disappointment 10
        "00025": (0, 1),
        "00028": (10, 1),
        "10337": (7, 1),
        "03747": (0, 2),
        "07542": (9, 3),
        "00070": (4, 5),
    }
    clips = by_id(result)
    assert {k: (c.label, c.test_fold) for k, c in clips.items()} == golden
    assert clips["00025"].video_path.name == "00025.mp4" and clips["00025"].audio_path.name == "00025.wav"
    assert "20045" not in clips  # compound only
    assert_clip_ids_safe(result)


def test_clip_without_audio_is_dropped_from_av_but_kept_visual_only(tmp_path: Path) -> None:
    root = make_mafw(tmp_path)
    av = get_adapter("mafw").scan(root)
    assert "no audio" in reasons(av)["00903.mp4"] and "00903" not in by_id(av)
    assert "malformed" in next(p.reason for p in av.problems if p.path.endswith("test.txt:4"))
    visual = by_id(get_adapter("mafw", require_audio=False, video="frames").scan(root))
    clip = visual["00903"]
    assert clip.audio_path is None and clip.extra == {"frames": True, "no_audio": True} and clip.test_fold == 4
    assert clip.video_path.is_dir() and clip.video_path.name == "00903"


def test_without_audio_16k_the_clips_without_an_audio_stream_follow_the_av_protocol(tmp_path: Path) -> None:
    import shutil

    root = make_mafw(tmp_path)
    shutil.rmtree(root / "data" / "audio_16k")
    av = get_adapter("mafw").scan(root)
    assert "00903" not in by_id(av) and "no audio stream" in reasons(av)["00903.mp4"]
    assert by_id(av)["00025"].audio_path is None  # the mp4's own track
    kept = by_id(get_adapter("mafw", require_audio=False).scan(root))
    assert kept["00903"].extra == {"no_audio": True} and kept["00903"].audio_path is None
    frames = by_id(get_adapter("mafw", video="frames").scan(root))
    assert frames["00025"].audio_path == root / "data" / "clips" / "00025.mp4"  # frames timed by the clip's audio


def test_compound_43_class_order_is_the_sorted_label_set(tmp_path: Path) -> None:
    adapter = get_adapter("mafw", classes=43)
    result = adapter.scan(make_mafw(tmp_path))
    assert adapter.classes == (
        "anger",
        "anger_disgust_anxiety",
        "anxiety_helplessness",
        "contempt",
        "disappointment_sadness",
    )
    assert by_id(result)["20045"].label == 1 and by_id(result)["20045"].test_fold == 1
    assert any("expected 43" in p.reason for p in result.problems)


@pytest.mark.parametrize("split_dir", ["Train_Test_Set", "split"])
def test_split_folder_spellings(tmp_path: Path, split_dir: str) -> None:
    assert len(get_adapter("mafw").scan(make_mafw(tmp_path, split_dir)).clips) == 6


def test_missing_split_folder_raises(tmp_path: Path) -> None:
    (tmp_path / "MAFW").mkdir()
    with pytest.raises(FileNotFoundError, match="Train & Test Set"):
        get_adapter("mafw").scan(tmp_path / "MAFW")


def test_hicmae_list_path_maps_to_clip_id() -> None:
    assert get_adapter("mafw").list_clip_id("/r/MAFW/data/frames/00025", "/r/MAFW/data/audio_16k/00025.wav") == "00025"
