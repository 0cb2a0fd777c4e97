from __future__ import annotations

from pathlib import Path

import pytest

from avf.data.adapters import get_adapter
from avf.data.adapters.dfew import clip_name
from tests.support.fixtures_datasets import make_dfew
from tests.unit.adapters.helpers import assert_clip_ids_safe, by_id, reasons


def test_folds_labels_and_dropped_clips(tmp_path: Path) -> None:
    result = get_adapter("dfew").scan(make_dfew(tmp_path))
    clips = by_id(result)
    # index = label - 1; zero-padded names from integer ids; 00006 (no face folder) dropped
    assert {k: (c.label, c.test_fold) for k, c in clips.items()} == {
        "00001": (0, 1),
        "00002": (1, 1),
        "00003": (2, 2),
        "00004": (3, 3),
        "00005": (4, 4),
        "00007": (6, 5),
    }
    assert clips["00001"].video_path.name == "00001.mp4" and clips["00001"].audio_path is None
    assert clips["00001"].extra["votes"] == (8, 2, 0, 0, 0, 0, 0)  # read from annotation.xlsx
    why = reasons(result)
    assert "face undetected" in why["00006.mp4"]
    assert "annotation 0" in why["00008.mp4"]
    assert "label='9'" in why["set_5.csv"]
    assert_clip_ids_safe(result)


@pytest.mark.parametrize("video", ["clip_224x224", "clip_224x224_16f"])
def test_frame_folder_variants_take_audio_from_the_original(tmp_path: Path, video: str) -> None:
    clip = by_id(get_adapter("dfew", video=video).scan(make_dfew(tmp_path)))["00003"]
    assert clip.video_path.parent.name == video and clip.extra["frames"] is True
    assert clip.audio_path is not None and clip.audio_path.name == "00003.mp4"


def test_clip_name_padding() -> None:
    assert [clip_name(x) for x in ("1", "00012", "12345", "0", "x")] == ["00001", "00012", "12345", None, None]


@pytest.mark.parametrize(("folder", "prefix"), [("test(single_labeled)", ""), ("test(single-labeled)", "test_")])
def test_split_spellings_of_the_release_readme_and_of_users(tmp_path: Path, folder: str, prefix: str) -> None:
    root = make_dfew(tmp_path)
    split = root / "EmoLabel_DataSplit"
    renamed = split / f"renamed_{folder}"
    (split / "test(single-labeled)").rename(renamed)
    for path in renamed.iterdir():
        path.rename(renamed / f"{prefix}{path.name}")
    renamed.rename(split / folder)
    clips = by_id(get_adapter("dfew").scan(root))
    assert {k: c.test_fold for k, c in clips.items()} == {
        "00001": 1,
        "00002": 1,
        "00003": 2,
        "00004": 3,
        "00005": 4,
        "00007": 5,
    }


def test_missing_split_files_name_every_spelling_looked_for(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError) as info:
        get_adapter("dfew").scan(tmp_path)
    message = str(info.value)
    assert "test(single-labeled)/{set_K,test_set_K}.csv" in message
    assert "test(single_labeled)/{set_K,test_set_K}.csv" in message
