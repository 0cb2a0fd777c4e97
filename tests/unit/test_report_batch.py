"""Ablation batch files: experiment names and overrides, and validation against params.yaml before queueing."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from avf.report.batch import Batch, arms, experiments, load_batch, queue_order, validate

ROOT = Path(__file__).resolve().parents[2]
PAPER = ROOT / "pipelines" / "ablations" / "paper.yaml"


def test_the_papers_batch_is_five_arms_over_three_folds_and_two_seeds_for_the_main_pair() -> None:
    batch = load_batch(PAPER)
    validate(batch, ROOT / "params.yaml")  # every experiment's params validate
    names = arms(batch)
    assert list(names) == ["full", "scratch", "no-stage2", "no-iavcl", "no-decoder-masking"]
    assert names["full"] == ["full-f1-s0", "full-f1-s1", "full-f2-s0", "full-f2-s1", "full-f3-s0", "full-f3-s1"]
    assert len(names["no-iavcl"]) == 3 and sum(map(len, names.values())) == 21
    order = queue_order(batch)  # each arm's upstream stages are trained once, by its first-fold experiments
    assert order[:7] == [
        "full-f1-s0",
        "full-f1-s1",
        "scratch-f1-s0",
        "scratch-f1-s1",
        "no-stage2-f1-s0",
        "no-iavcl-f1-s0",
        "no-decoder-masking-f1-s0",
    ]
    assert sorted(order) == sorted(n for exps in names.values() for n in exps)
    assert experiments(batch)["scratch"]["scratch-f2-s1"] == [
        "finetune.init_from=scratch",
        "data.split.fold=2",
        "seed=1",
        "ablation.name=scratch",
    ]


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("finetune.init_fron=scratch", "no key 'finetune.init_fron'"),
        ("finetun.init_from=scratch", "no section 'finetun'"),
        ("finetune.init_from=nowhere", "init_from"),
        ("masking.decoder_masking", "expected KEY=VALUE"),
        ("+masking.extra=1", "expected KEY=VALUE of an existing key"),
        ("data.split.fold=1,2", "is a sweep"),
        ("finetune.init_from=yes", "init_from"),  # DVC's grammar: yes is a string, not a boolean
    ],
)
def test_a_bad_override_fails_before_anything_is_queued(override: str, message: str) -> None:
    batch = Batch(folds=(1,), arms={"a": {}, "b": {"set": [override]}})
    with pytest.raises(ValueError, match=message) as err:
        validate(batch, ROOT / "params.yaml")
    assert str(err.value).startswith("experiment b-f1-s0: ")


def test_a_batch_file_is_strict(tmp_path: Path) -> None:
    path = tmp_path / "b.yaml"
    path.write_text(yaml.safe_dump({"folds": [1], "arms": {"a": {}, "b": {"sets": ["seed=1"]}}}))
    with pytest.raises(ValueError, match="sets"):
        load_batch(path)
    path.write_text(yaml.safe_dump({"folds": [1], "arms": {"a": {}}}))
    with pytest.raises(ValueError, match="arms"):  # one arm compares with nothing
        load_batch(path)


def test_queueing_some_arms_names_the_unknown_ones(tmp_path: Path) -> None:
    from avf.report.batch import queue

    with pytest.raises(ValueError, match=r"unknown arms \['scrach'\]"):
        queue(tmp_path, load_batch(PAPER), only=["full", "scrach"])


def test_a_report_can_take_some_arms_of_a_batch() -> None:
    from avf.report.batch import arms_of_batch

    batch = load_batch(PAPER)
    picked = arms_of_batch(batch, "scratch, full")
    assert list(picked) == ["full", "scratch"] and len(picked["scratch"]) == 6  # the batch's order: full first
    assert arms_of_batch(batch) == arms(batch)
    with pytest.raises(ValueError, match=r"unknown arms \['nope'\]"):
        arms_of_batch(batch, "full,nope")
