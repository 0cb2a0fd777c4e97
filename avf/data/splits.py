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

import numpy as np
import pandas as pd

from avf.config.data import SplitConfig

__all__ = ["assign_splits", "split_keys"]


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
