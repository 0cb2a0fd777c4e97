"""Train / val / test assignment for one fold of a dataset, with validation carved from training subjects.

Rules of :func:`assign_splits` (honest model selection: the test set never picks a checkpoint):

- k-fold datasets (some ``test_fold >= 1``): clips of fold ``fold`` are ``test``, the rest ``train``;
- fixed official split (``official_split`` set): ``test`` and ``train`` as listed, and an official
  ``val`` is kept as ``val`` (then nothing is carved);
- otherwise (unlabelled corpora): everything is ``train``.

Then ``val_subjects`` whole subjects are moved from ``train`` to ``val``, drawn with
``numpy.random.default_rng(seed)`` from the sorted training subjects of usable (``status == 'ok'``)
rows, so a run is reproducible and validation subjects never appear in training.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd

from avf.config import Params
from avf.config.data import SplitConfig
from avf.data.manifest import label_space, read_manifest

__all__ = ["DatasetSplits", "assign_splits", "dataset_splits", "split_keys"]


def assign_splits(manifest: pd.DataFrame, fold: int, val_subjects: int, seed: int) -> pd.Series:
    """``'train'``/``'val'``/``'test'`` for each manifest row (same index); see the module docstring."""
    folds = manifest["test_fold"]
    split = pd.Series("train", index=manifest.index, dtype=object)
    has_official_val = False
    if (folds >= 1).any():
        known = sorted(int(f) for f in folds[folds >= 1].unique())
        if fold not in known:
            raise ValueError(f"fold {fold} not in this dataset's folds {known}")
        split[folds == fold] = "test"
    elif manifest["official_split"].notna().any():
        official = manifest["official_split"]
        split[official == "test"] = "test"
        split[official == "val"] = "val"
        has_official_val = bool((official == "val").any())
    if val_subjects > 0 and not has_official_val:
        usable = manifest["status"] == "ok" if "status" in manifest.columns else True
        subjects = sorted(set(manifest.loc[(split == "train") & usable, "subject"].astype(str)))
        if val_subjects >= len(subjects):
            raise ValueError(
                f"val_subjects={val_subjects} but fold {fold} has only {len(subjects)} training subject(s); "
                "lower data.split.val_subjects"
            )
        chosen = set(np.random.default_rng(seed).choice(subjects, size=val_subjects, replace=False).tolist())
        split[(split == "train") & manifest["subject"].astype(str).isin(chosen)] = "val"
    return split


def split_keys(manifest: pd.DataFrame, cfg: SplitConfig) -> dict[str, list[str]]:
    """Shard keys of the usable clips per split: ``{"train": [...], "val": [...], "test": [...]}``."""
    from avf.data.shards import sample_key

    split = assign_splits(manifest, cfg.fold, cfg.val_subjects, cfg.seed)
    ok = manifest["status"] == "ok"
    out: dict[str, list[str]] = {}
    for name in ("train", "val", "test"):
        rows = manifest[ok & (split == name)]
        out[name] = sorted(sample_key(d, c) for d, c in zip(rows["dataset"], rows["clip_id"], strict=True))
    return out


@dataclasses.dataclass
class DatasetSplits:
    """One labelled dataset as the supervised stages see it."""

    name: str
    shard_dir: Path
    train_keys: list[str]
    val_keys: list[str]
    test_keys: list[str]
    task: str  # classification | regression
    num_outputs: int  # classes, or regression targets
    class_names: tuple[str, ...] = ()
    target_names: tuple[str, ...] = ()
    weight: float = 1.0


def dataset_splits(params: Params, name: str, manifest_dir: Path, shard_root: Path, role: str) -> DatasetSplits:
    """Train/val/test keys of one dataset: the configured fold (target) or all-but-validation (stage 2)."""
    from avf.data.shards import sample_key

    path = manifest_dir / f"{name}.parquet"
    df = read_manifest(path)
    labels = label_space(df, path)
    df = df[df["status"] == "ok"]
    if role == "target":
        split = assign_splits(df, params.data.split.fold, params.data.split.val_subjects, params.data.split.seed)
    else:  # stage 2 trains on every clip of the dataset except the held-out validation subjects
        pooled = df.assign(test_fold=-1, official_split=None)
        split = assign_splits(pooled, 0, params.data.split.val_subjects, params.data.split.seed)
    keys = {s: [sample_key(name, c) for c in df.loc[split == s, "clip_id"]] for s in ("train", "val", "test")}
    if not keys["train"]:
        raise ValueError(f"dataset {name}: no training clips (check data.split and the manifest)")
    weight = params.intermediate.weights.get(name, 1.0)
    return DatasetSplits(
        name=name,
        shard_dir=shard_root / name,
        train_keys=keys["train"],
        val_keys=keys["val"],
        test_keys=keys["test"],
        task=labels.task,
        num_outputs=labels.num_outputs,
        class_names=labels.classes,
        target_names=labels.targets,
        weight=weight,
    )
