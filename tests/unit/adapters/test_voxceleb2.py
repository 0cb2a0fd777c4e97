from __future__ import annotations

from pathlib import Path

import pytest

from avf.data.adapters import get_adapter
from tests.support.fixtures_datasets import make_voxceleb2, touch
from tests.unit.adapters.helpers import assert_clip_ids_safe, by_id, reasons


def test_hicmae_tree_with_wav_and_m4a_twins(tmp_path: Path) -> None:
    adapter = get_adapter("voxceleb2")
    result = adapter.scan(make_voxceleb2(tmp_path))
    clips = by_id(result)
    assert adapter.task == "none"
    assert sorted(clips) == ["id00012_21Uxsk56VDQ_00001", "id00012_21Uxsk56VDQ_00002", "id00015_0fijmz4vTVU_00001"]
    assert clips["id00012_21Uxsk56VDQ_00001"].audio_path.parts[-7:] == (
        "audio",
        "file~",
        "dev",
        "aac",
        "id00012",
        "21Uxsk56VDQ",
        "00001.wav",
    )
    assert clips["id00012_21Uxsk56VDQ_00002"].audio_path.suffix == ".m4a"
    assert clips["id00015_0fijmz4vTVU_00001"].audio_path is None
    assert clips["id00015_0fijmz4vTVU_00001"].subject == "id00015"
    assert "empty" in reasons(result)["00002.mp4"]
    assert_clip_ids_safe(result)


def test_official_dev_layout_and_identity_root(tmp_path: Path) -> None:
    touch(tmp_path / "vox" / "dev" / "mp4" / "id00001" / "abc-DEF_123" / "00007.mp4")
    touch(tmp_path / "vox" / "dev" / "aac" / "id00001" / "abc-DEF_123" / "00007.m4a")
    clip = get_adapter("voxceleb2").scan(tmp_path / "vox").clips[0]
    assert clip.clip_id == "id00001_abc-DEF_123_00007" and clip.audio_path.suffix == ".m4a"
    direct = get_adapter("voxceleb2").scan(tmp_path / "vox" / "dev" / "mp4").clips
    assert [c.clip_id for c in direct] == ["id00001_abc-DEF_123_00007"]


@pytest.mark.parametrize("at_videos", [False, True])
def test_avf_mae_layout_takes_the_prepared_wav(tmp_path: Path, at_videos: bool) -> None:
    root = tmp_path / "videos" / "Voxceleb2-dev"  # the rule applies below the root, whatever the root is called
    for clip in ("00001", "00002"):
        touch(root / "videos" / "id00012" / "21Uxsk56VDQ" / f"{clip}.mp4")
    touch(root / "audio_16k" / "id00012" / "21Uxsk56VDQ" / "00001.wav")
    result = get_adapter("voxceleb2").scan(root / "videos" if at_videos else root)
    (clip,) = result.clips
    assert clip.clip_id == "id00012_21Uxsk56VDQ_00001"
    assert clip.audio_path == root / "audio_16k" / "id00012" / "21Uxsk56VDQ" / "00001.wav"
    assert "audio missing" in reasons(result)["00002.mp4"]  # never the mp4's own track instead


def test_root_without_identities_raises(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="idNNNNN"):
        get_adapter("voxceleb2").scan(tmp_path)


def test_list_clip_id_from_pretraining_path() -> None:
    path = "/d/VoxCeleb2/video/file~/dev/mp4/id00012/21Uxsk56VDQ/00001.mp4"
    assert get_adapter("voxceleb2").list_clip_id(path) == "id00012_21Uxsk56VDQ_00001"
