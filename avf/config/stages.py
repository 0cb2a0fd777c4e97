"""The ``params.yaml`` sections each DVC stage reads: the one list that ``dvc.yaml`` mirrors.

DVC re-runs a stage when one of its ``params`` changes; the same sections name the stage's MLflow params,
tag its runs with their hash and name its checkpoint folder, so the three can never disagree.
``tests/unit/test_stage_params.py`` fails when ``dvc.yaml`` lists other sections than these.
``{dataset}`` stands for the dataset of a per-dataset stage (``${key}`` in ``dvc.yaml``).
"""

from __future__ import annotations

__all__ = ["STAGE_PARAMS", "stage_params"]

_INPUTS = ("data.datasets", "data.clip", "data.audio", "data.augment")
_TRAINING = (*_INPUTS, "data.ingest")  # data.ingest: ray changes stage 1's clip order

STAGE_PARAMS: dict[str, tuple[str, ...]] = {
    "synth": ("data.synth",),
    "faces": ("data.face", "data.datasets.{dataset}"),
    "audio": ("data.audio", "data.datasets.{dataset}"),
    "manifest": ("data.datasets.{dataset}", "data.face.min_coverage", "data.audio.missing_policy"),
    "shards": ("data.shards", "data.audio"),
    "pretrain": ("seed", *_TRAINING, "model", "masking", "pretrain", "ray"),
    # stage 2 trains on whole datasets minus validation subjects: the target's fold is not its input
    "intermediate": ("seed", *_TRAINING, "data.split.val_subjects", "data.split.seed", "model", "intermediate", "ray"),
    "finetune": ("seed", "data.target", *_TRAINING, "data.split", "model", "finetune", "ray"),
    "evaluate": ("seed", "data.target", *_INPUTS, "data.split", "eval"),
    "register": ("tracking", "predict"),
}


def stage_params(stage: str, dataset: str | None = None) -> tuple[str, ...]:
    """The sections of ``stage`` (``dataset`` fills ``{dataset}`` of the per-dataset stages)."""
    if stage not in STAGE_PARAMS:
        raise KeyError(f"unknown stage {stage!r}; known: {sorted(STAGE_PARAMS)}")
    sections = STAGE_PARAMS[stage]
    if any("{dataset}" in s for s in sections):
        if dataset is None:
            raise ValueError(f"stage {stage!r} is per dataset: give the dataset")
        return tuple(s.format(dataset=dataset) for s in sections)
    return sections
