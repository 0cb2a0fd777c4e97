"""``dvc.yaml`` and the code name the same ``params.yaml`` sections for every stage."""

from __future__ import annotations

from pathlib import Path

import pytest

from avf.config import load_params, section_hash
from avf.config.stages import STAGE_PARAMS, stage_params
from tests.support.dvc_stages import dvc_stages

ROOT = Path(__file__).resolve().parents[2]


def test_every_dvc_stage_reads_the_sections_the_code_names() -> None:
    dvc = {
        name: tuple(str(p).replace("${key}", "{dataset}") for p in s.get("params", []))
        for name, s in dvc_stages().items()
    }
    assert dvc == STAGE_PARAMS


@pytest.mark.parametrize("stage", sorted(STAGE_PARAMS))
def test_every_section_resolves_in_the_real_params_file(stage: str) -> None:
    params = load_params(ROOT / "params.yaml")
    sections = stage_params(stage, dataset=params.data.target)
    assert len(section_hash(params, *sections)) == 12
    for section in sections:
        params.section(section)


def test_a_per_dataset_stage_needs_its_dataset() -> None:
    with pytest.raises(ValueError, match="per dataset"):
        stage_params("faces")
    with pytest.raises(KeyError, match="unknown stage"):
        stage_params("train")
