from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from avf.data.adapters import get_adapter
from avf.data.adapters.listfiles import (
    derive_pretrain_audio,
    read_official_splits,
    read_pretrain_list,
    write_official_lists,
    write_pretrain_list,
)
from tests.support.fixtures_datasets import (
    AUTHORS_ROOT,
    WEREWOLF_TARGETS,
    cremad_list_line,
    make_cremad,
    make_hicmae_lists,
    make_werewolf_xl,
    write_text,
)
from tests.unit.adapters.helpers import by_id

A = cremad_list_line


def _cremad_lists(base: Path) -> Path:
    """Official-style lists that disagree with the built-in rule for 1019 (test in fold 3)."""
    fold1_test = [A("1001_DFA_ANG_XX", 0), A("1001_IEO_HAP_HI", 3), A("1001_IEO_SAD_LO", 5), A("1018_ITS_NEU_XX", 4)]
    return make_hicmae_lists(
        base / "crema-d" / "audio_visual",
        {
            1: {"train": [A("1072_TSI_FEA_XX", 2), A("1073_MTI_SAD_XX", 5)], "test": fold1_test},
            3: {"train": fold1_test, "test": [A("1019_WSI_DIS_XX", 1), A("9999_XXX_ANG_XX", 0)]},
            4: {"train": fold1_test, "test": [A("1072_TSI_FEA_XX", 2)]},
            5: {"train": fold1_test, "test": [A("1073_MTI_SAD_XX", 5)]},
        },
    )


def test_read_official_splits_maps_paths_to_clip_ids(tmp_path: Path) -> None:
    lists = _cremad_lists(tmp_path)
    table = read_official_splits(lists, get_adapter("cremad"), {f"{AUTHORS_ROOT}/": "/data/"})
    assert list(table.columns[:3]) == ["clip_id", "fold", "split"]
    test1 = table[(table.fold == 1) & (table.split == "test")]
    assert list(test1.clip_id) == ["1001_DFA_ANG_XX", "1001_IEO_HAP_HI", "1001_IEO_SAD_LO", "1018_ITS_NEU_XX"]
    assert list(test1.label) == [0, 3, 5, 4]
    assert test1.frame_dir.iloc[0] == "/data/CREMA-D/face_aligned/1001_DFA_ANG_XX"
    assert test1.audio_path.iloc[0] == "/data/CREMA-D/AudioWAV/1001_DFA_ANG_XX.wav"
    assert sorted(table.fold.unique()) == [1, 3, 4, 5]


def test_official_lists_option_overrides_built_in_folds(tmp_path: Path) -> None:
    lists = _cremad_lists(tmp_path / "lists")
    result = get_adapter("cremad", official_lists=str(lists)).scan(make_cremad(tmp_path))
    folds = {k: c.test_fold for k, c in by_id(result).items()}
    assert folds == {
        "1001_DFA_ANG_XX": 1,
        "1001_IEO_HAP_HI": 1,
        "1001_IEO_SAD_LO": 1,
        "1018_ITS_NEU_XX": 1,
        "1019_WSI_DIS_XX": 3,  # the lists win over the actor rule (fold 2)
        "1072_TSI_FEA_XX": 4,
        "1073_MTI_SAD_XX": 5,
    }
    reasons = [p.reason for p in result.problems]
    assert any("not in any official test list" in r for r in reasons)  # 1091_IWL_ANG_XX
    assert any("'9999_XXX_ANG_XX' not found on disk" in r for r in reasons)


def test_val_list_is_the_evaluation_list_when_a_fold_has_no_test(tmp_path: Path) -> None:
    lists = make_hicmae_lists(tmp_path, {1: {"train": [A("1019_WSI_DIS_XX", 1)], "val": [A("1001_DFA_ANG_XX", 0)]}})
    result = get_adapter("cremad", official_lists=str(lists)).scan(make_cremad(tmp_path / "raw"))
    assert {k: c.test_fold for k, c in by_id(result).items()} == {"1001_DFA_ANG_XX": 1}


def test_fixed_split_lists_set_official_split(tmp_path: Path) -> None:
    flat = tmp_path / "flat"
    write_text(flat / "train.csv", A("1001_DFA_ANG_XX", 0) + "\n")
    write_text(flat / "test.csv", A("1019_WSI_DIS_XX", 1) + "\n" + A("1001_DFA_ANG_XX", 0) + "\n")
    result = get_adapter("cremad", official_lists=str(flat)).scan(make_cremad(tmp_path))
    clips = by_id(result)
    assert {k: (c.official_split, c.test_fold) for k, c in clips.items()} == {
        "1001_DFA_ANG_XX": ("train", None),
        "1019_WSI_DIS_XX": ("test", None),
    }
    assert any("listed in train and test" in p.reason for p in result.problems)
    empty = tmp_path / "empty"
    write_text(empty / "split01" / "test.csv", "")
    with pytest.raises(ValueError, match="no entries"):
        get_adapter("cremad", official_lists=str(empty)).scan(make_cremad(tmp_path / "again"))


def test_writer_round_trip(tmp_path: Path) -> None:
    adapter = get_adapter("cremad")
    clips = adapter.scan(make_cremad(tmp_path)).clips
    written = write_official_lists(clips, tmp_path / "out", frames_root="/d/faces", audio_root="/d/wav", with_val=True)
    assert tmp_path / "out" / "split05" / "val.csv" in written
    line = (tmp_path / "out" / "split02" / "test.csv").read_text()
    assert line == "/d/faces/1019_WSI_DIS_XX /d/wav/1019_WSI_DIS_XX.wav 1\n"
    table = read_official_splits(tmp_path / "out", adapter)
    test = table[table.split == "test"]
    assert dict(zip(test.clip_id, test.fold, strict=True)) == {c.clip_id: c.test_fold for c in clips}
    assert len(table[(table.fold == 1) & (table.split == "train")]) == len(clips) - 4
    with pytest.raises(ValueError, match="spaces"):
        write_official_lists(clips, tmp_path / "bad", frames_root="/d/Train & Test", audio_root="/d")


def test_a_list_label_that_disagrees_with_the_adapter_names_the_line_and_both_labels(tmp_path: Path) -> None:
    # HiCMAE's order is ANG 0, DIS 1, FEA 2, HAP 3, NEU 4, SAD 5; a list written in another order must fail
    lists = make_hicmae_lists(tmp_path / "lists", {1: {"test": [A("1001_DFA_ANG_XX", 0), A("1001_IEO_HAP_HI", 2)]}})
    with pytest.raises(ValueError) as info:
        get_adapter("cremad", official_lists=str(lists)).scan(make_cremad(tmp_path))
    message = str(info.value)
    assert "split01/test.csv:2" in message and "'1001_IEO_HAP_HI'" in message
    assert "labelled 2 (FEA) in the list but 3 (HAP) by the cremad adapter" in message


def test_regression_list_targets_that_disagree_fail(tmp_path: Path) -> None:
    prefix = f"{AUTHORS_ROOT}/Werewolf-XL"
    (clip_id, targets), *_ = WEREWOLF_TARGETS.items()
    swapped = " ".join(f"{v:g}" for v in (targets[1], targets[0], targets[2]))
    line = f"{prefix}/openface/{clip_id}/{clip_id}_aligned {prefix}/audio_16k/{clip_id}.wav {swapped}"
    lists = make_hicmae_lists(tmp_path / "lists", {1: {"test": [line]}})
    with pytest.raises(ValueError, match=rf"split01/test\.csv:1: clip '{clip_id}' has targets"):
        get_adapter("werewolf_xl", official_lists=str(lists)).scan(make_werewolf_xl(tmp_path))


def test_regression_lists_keep_targets(tmp_path: Path) -> None:
    prefix = f"{AUTHORS_ROOT}/Werewolf-XL"
    line = f"{prefix}/openface/01_02_94/01_02_94_aligned {prefix}/audio_16k/01_02_94.wav 1.5 1.0 -0.5"
    lists = make_hicmae_lists(tmp_path, {1: {"test": [line]}})
    table = read_official_splits(lists, get_adapter("werewolf_xl"))
    assert table.clip_id.tolist() == ["01_02_94"] and table.targets.tolist() == [(1.5, 1.0, -0.5)]


def test_malformed_line_names_the_file(tmp_path: Path) -> None:
    lists = make_hicmae_lists(tmp_path, {1: {"test": ["/only/one/field"]}})
    with pytest.raises(ValueError, match=r"test\.csv:1"):
        read_official_splits(lists, get_adapter("cremad"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="split0K"):
        read_official_splits(tmp_path / "empty", get_adapter("cremad"))


def test_pretrain_audio_rules_and_list(tmp_path: Path) -> None:
    avf = "./datasets/AV-Speech-Final-videos-37w/videos/AbCdEfGhIjk_12.000_15.000.mp4"
    assert (
        derive_pretrain_audio(avf) == "./datasets/AV-Speech-Final-audio_16k-37w/audio_16k/AbCdEfGhIjk_12.000_15.000.wav"
    )
    vox = "/d/VoxCeleb2/video/file~/dev/mp4/id00012/21Uxsk56VDQ/00001.mp4"
    assert derive_pretrain_audio(vox, "hicmae") == "/d/VoxCeleb2/audio/file~/dev/aac/id00012/21Uxsk56VDQ/00001.wav"
    out = write_pretrain_list(["/d/datasets/MER24/videos/sample_00000001.mp4"], tmp_path / "pre.csv")
    assert out.read_text() == "/d/datasets/MER24/videos/sample_00000001.mp4 0\n"
    table = read_pretrain_list(out)
    assert table.audio_path.tolist() == ["/d/datasets/MER24/audio_16k/sample_00000001.wav"]


def test_cli_import_lists(tmp_path: Path) -> None:
    from avf.cli import app

    lists = _cremad_lists(tmp_path)
    out = tmp_path / "splits.csv"
    args = ["data", "import-lists", str(lists), "--dataset", "cremad", "--out", str(out)]
    result = CliRunner().invoke(app, [*args, "--rewrite", f"{AUTHORS_ROOT}=/data"])
    assert result.exit_code == 0, result.output
    table = pd.read_csv(out)
    assert len(table) == 22 and table.frame_dir.str.startswith("/data/CREMA-D/").all()
    missing = CliRunner().invoke(app, ["data", "import-lists", str(tmp_path / "nope"), "-d", "cremad"])
    assert missing.exit_code == 3
