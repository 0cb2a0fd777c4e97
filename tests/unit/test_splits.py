"""Split assignment: k-fold or official split, validation subjects carved from training subjects."""

from __future__ import annotations

import pandas as pd
import pytest

from avf.config.data import SplitConfig
from avf.data.splits import assign_splits, split_keys


def _kfold() -> pd.DataFrame:
    rows = []
    for subject in range(12):
        for clip in range(3):
            rows.append(
                {
                    "clip_id": f"s{subject}_{clip}",
                    "dataset": "ravdess",
                    "subject": f"Actor_{subject:02d}",
                    "test_fold": subject // 4 + 1,  # 3 folds of 4 subjects
                    "official_split": None,
                    "status": "ok",
                }
            )
    return pd.DataFrame(rows)


def test_kfold_test_is_the_fold_and_val_subjects_come_from_training() -> None:
    df = _kfold()
    split = assign_splits(df, fold=2, val_subjects=2, seed=0)
    assert set(df.loc[split == "test", "test_fold"]) == {2}
    test_subjects = set(df.loc[split == "test", "subject"])
    val_subjects = set(df.loc[split == "val", "subject"])
    train_subjects = set(df.loc[split == "train", "subject"])
    assert len(val_subjects) == 2 and not val_subjects & test_subjects and not val_subjects & train_subjects
    assert (split == "val").sum() == 6 and (split == "train").sum() == 18
    assert split.index.equals(df.index)


def test_carving_is_deterministic_by_seed() -> None:
    df = _kfold()
    a = assign_splits(df, 1, 2, seed=3)
    assert a.equals(assign_splits(df, 1, 2, seed=3))
    draws = {tuple(sorted(set(df.loc[assign_splits(df, 1, 2, seed=s) == "val", "subject"]))) for s in range(8)}
    assert len(draws) > 1


def test_failed_clips_do_not_make_a_subject_eligible() -> None:
    df = _kfold()
    df.loc[df["subject"] != "Actor_05", "status"] = "no face"  # only Actor_05 (fold 2) is usable
    df.loc[df["subject"] == "Actor_06", "status"] = "ok"
    split = assign_splits(df, fold=1, val_subjects=1, seed=0)
    assert set(df.loc[split == "val", "subject"]) <= {"Actor_05", "Actor_06"}


def test_official_split_keeps_its_val_or_carves_one() -> None:
    df = pd.DataFrame(
        {
            "clip_id": [f"c{i}" for i in range(8)],
            "subject": ["a", "a", "b", "b", "c", "c", "d", "d"],
            "test_fold": -1,
            "official_split": ["train", "train", "train", "train", "val", "val", "test", "test"],
            "status": "ok",
        }
    )
    split = assign_splits(df, fold=1, val_subjects=1, seed=0)
    assert split.tolist() == df["official_split"].tolist()  # official val kept, nothing carved
    no_val = df.assign(official_split=["train"] * 6 + ["test"] * 2)
    split = assign_splits(no_val, fold=1, val_subjects=1, seed=0)
    assert (split == "test").sum() == 2 and split[split == "val"].index.size == 2
    assert df.loc[split == "val", "subject"].nunique() == 1


def test_unlabelled_corpus_is_all_train_except_carved_val() -> None:
    df = pd.DataFrame({"clip_id": ["a", "b", "c"], "subject": ["x", "y", "z"], "test_fold": -1, "official_split": None})
    assert assign_splits(df, fold=1, val_subjects=0, seed=0).tolist() == ["train"] * 3
    assert (assign_splits(df, fold=1, val_subjects=1, seed=0) == "val").sum() == 1


def test_bad_requests_are_errors() -> None:
    df = _kfold()
    with pytest.raises(ValueError, match=r"fold 4 not in this dataset's folds \[1, 2, 3\]"):
        assign_splits(df, fold=4, val_subjects=1, seed=0)
    with pytest.raises(ValueError, match="val_subjects=8 but fold 1 has only 8 training subject"):
        assign_splits(df, fold=1, val_subjects=8, seed=0)


def test_split_keys_lists_usable_shard_keys() -> None:
    df = _kfold()
    df.loc[0, "status"] = "no face"
    keys = split_keys(df, SplitConfig(fold=1, val_subjects=1, seed=0))
    assert len(keys["test"]) == 11 and "ravdess__s0_0" not in keys["test"]
    assert len(keys["val"]) == 3 and len(keys["train"]) == 21
    assert all(k.startswith("ravdess__") for split in keys.values() for k in split)
