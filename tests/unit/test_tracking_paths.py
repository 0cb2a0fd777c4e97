"""Relative store paths resolve in the project, also from a DVC experiment workspace (deleted after the run)."""

from __future__ import annotations

from pathlib import Path

import pytest

from avf.tracking.buffer import resolve_buffer_dir
from avf.tracking.store import absolute_sqlite, project_dir


def test_an_experiment_workspace_resolves_to_its_project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    workspace = tmp_path / "proj" / ".dvc" / "tmp" / "exps" / "tmpk3y9x"
    workspace.mkdir(parents=True)
    assert project_dir(workspace / "sub") == tmp_path / "proj"
    assert project_dir(tmp_path / "proj") == tmp_path / "proj"
    monkeypatch.chdir(workspace)
    monkeypatch.delenv("AVF_MLFLOW_BUFFER_DIR", raising=False)
    assert absolute_sqlite("sqlite:///mlruns.db") == f"sqlite:///{tmp_path / 'proj' / 'mlruns.db'}"
    assert absolute_sqlite("sqlite:///mlruns.db?timeout=5").endswith("proj/mlruns.db?timeout=5")
    assert absolute_sqlite("sqlite:////abs/x.db") == "sqlite:////abs/x.db"
    assert resolve_buffer_dir(None) == tmp_path / "proj" / "runs" / "mlflow-buffer"
    monkeypatch.chdir(tmp_path)
    assert absolute_sqlite("sqlite:///mlruns.db") == f"sqlite:///{tmp_path / 'mlruns.db'}"
