from __future__ import annotations

from pathlib import Path

import pytest

from avf.data.adapters import get_adapter
from tests.support.fixtures_datasets import AUTHORS_ROOT, WEREWOLF_TARGETS, make_hicmae_lists, make_werewolf_xl
from tests.unit.adapters.helpers import assert_clip_ids_safe, by_id, reasons


def test_game_folds_and_targets(tmp_path: Path) -> None:
    adapter = get_adapter("werewolf_xl")
    assert adapter.task == "regression" and adapter.target_names == ("arousal", "valence", "dominance")
    result = adapter.scan(make_werewolf_xl(tmp_path))
    clips = by_id(result)
    assert {k: c.test_fold for k, c in clips.items()} == {
        "01_01_128": 1,
        "01_02_94": 1,
        "06_09_001": 1,
        "07_01_200": 2,
        "19_01_010": 4,
        "30_05_436": 5,
    }
    assert clips["07_01_200"].targets == WEREWOLF_TARGETS["07_01_200"]
    assert clips["07_01_200"].subject == "07_01" and clips["07_01_200"].extra["frames"] is True
    assert clips["07_01_200"].video_path.name == "07_01_200_aligned"
    why = reasons(result)
    assert "audio missing" in why["12_03_015"] and "malformed" in why["31_01_001"] and "no targets" in why["02_02_002"]
    assert_clip_ids_safe(result)


def test_targets_from_the_official_lists_when_no_table(tmp_path: Path) -> None:
    root = make_werewolf_xl(tmp_path / "raw", with_table=False)
    prefix = f"{AUTHORS_ROOT}/Werewolf-XL"

    def line(clip: str) -> str:
        a, v, d = WEREWOLF_TARGETS[clip]
        return f"{prefix}/openface/{clip}/{clip}_aligned {prefix}/audio_16k/{clip}.wav {a} {v} {d}"

    lists = make_hicmae_lists(
        tmp_path / "lists",
        {
            1: {"train": [line("07_01_200")], "test": [line("01_02_94"), line("06_09_001")]},
            2: {"train": [line("01_02_94")], "test": [line("07_01_200")]},
        },
    )
    result = get_adapter("werewolf_xl", official_lists=str(lists)).scan(root)
    clips = by_id(result)
    assert {k: (c.test_fold, c.targets) for k, c in clips.items()} == {
        "01_02_94": (1, (1.5, 1.0, 1.0)),
        "06_09_001": (1, (1.5, 0.75, 1.0)),
        "07_01_200": (2, (0.5, -0.25, 0.0)),
    }


def test_no_labels_anywhere_raises(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="label table"):
        get_adapter("werewolf_xl").scan(make_werewolf_xl(tmp_path, with_table=False))
