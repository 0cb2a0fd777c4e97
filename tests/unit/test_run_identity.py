"""A training stage's run name (its checkpoint folder): resumed for the same params, inputs and code only."""

from __future__ import annotations

from pathlib import Path

import pytest

from avf.config import Params
from avf.train import stages


def test_code_digest_follows_the_sources(tmp_path: Path) -> None:
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "block.py").write_text("x = 1\n")
    (tmp_path / "loop.py").write_text("y = 2\n")
    before = stages.code_digest.__wrapped__(tmp_path)
    (tmp_path / "notes.txt").write_text("not code")
    assert stages.code_digest.__wrapped__(tmp_path) == before
    (tmp_path / "models" / "block.py").write_text("x = 3\n")
    assert stages.code_digest.__wrapped__(tmp_path) != before


def test_a_code_change_starts_a_new_run_instead_of_resuming_the_old_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shards = tmp_path / "shards"
    shards.mkdir()
    params = Params()
    name = stages._run_name(params, "pretrain", [shards])
    assert name == stages._run_name(params, "pretrain", [shards])  # an interrupted run resumes
    monkeypatch.setattr(stages, "code_digest", lambda: "edited-model-code")
    assert stages._run_name(params, "pretrain", [shards]) != name
    assert stages._run_name(params, "pretrain", [shards]).startswith(name.rsplit("-", 1)[0])  # same params
