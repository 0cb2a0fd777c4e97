"""DVC's own experiment queue: two queued experiments run by ``dvc queue start -j 2`` both finish, ``dvc exp
show`` lists them, and their MLflow runs are in the project's store (the default relative
``sqlite:///mlruns.db``), not in the experiment workspaces under ``.dvc/tmp/exps/`` that DVC deletes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from mlflow import MlflowClient

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

DVC = str(Path(sys.executable).with_name("dvc"))

# A stage that logs through avf's tracking layer with the default params: tracking.uri sqlite:///mlruns.db,
# artifact root mlartifacts, buffer runs/mlflow-buffer (all relative to where the stage runs).
TRAIN = """
import json
import yaml
from avf import tracking
from avf.config import parse_params

x = yaml.safe_load(open("params.yaml"))["x"]
params = parse_params({})
with tracking.stage_run(params, stage="toy") as run:
    run.log_metrics({"toy/x": x}, step=0)
    run.log_dict({"x": x}, "x.json")
json.dump({"x": x}, open("metrics.json", "w"))
"""


def _dvc(project: Path, env: dict[str, str], *args: str) -> str:
    out = subprocess.run([DVC, *args], cwd=project, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, f"dvc {' '.join(args)}:\n{out.stdout}\n{out.stderr}"
    return out.stdout


def _project(path: Path, env: dict[str, str]) -> Path:
    path.mkdir()
    (path / "train.py").write_text(TRAIN)
    (path / "params.yaml").write_text("x: 1\n")
    stage = {
        "cmd": f"{sys.executable} train.py",
        "deps": ["train.py"],
        "params": ["x"],
        "metrics": [{"metrics.json": {"cache": False}}],
    }
    (path / "dvc.yaml").write_text(yaml.safe_dump({"stages": {"train": stage}}, sort_keys=False))
    (path / ".gitignore").write_text("mlruns.db\nmlartifacts/\nruns/\n")
    git = ["git", "-c", "user.email=test@example.org", "-c", "user.name=test"]
    subprocess.run(["git", "init", "-q", "-b", "main"], cwd=path, check=True)
    _dvc(path, env, "init", "-q")
    subprocess.run([*git, "add", "-A"], cwd=path, check=True)
    subprocess.run([*git, "commit", "-qm", "toy"], cwd=path, check=True)
    return path


def test_two_queued_experiments_run_in_parallel_and_log_to_the_project_store(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "AVF_MLFLOW", "DVC_EXP"))}
    env.update(PATH=f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}", DVC_NO_ANALYTICS="1")
    project = _project(tmp_path / "proj", env)
    _dvc(project, env, "exp", "run", "--queue", "-n", "two", "-S", "x=2")
    _dvc(project, env, "exp", "run", "--queue", "-n", "three", "-S", "x=3")
    _dvc(project, env, "queue", "start", "-j", "2")
    try:
        deadline = time.monotonic() + 400
        while True:
            status = _dvc(project, env, "queue", "status")
            if "Queued" not in status and "Running" not in status:
                break
            assert time.monotonic() < deadline, status
            time.sleep(1)
    finally:
        _dvc(project, env, "queue", "stop", "--kill")
    logs = "\n".join(_dvc(project, env, "queue", "logs", name) for name in ("two", "three"))
    assert status.count("Success") == 2, f"{status}\n{logs}"

    shown = json.loads(_dvc(project, env, "exp", "show", "--json"))
    exps = {
        e["name"]: e["data"]["metrics"]["metrics.json"]["data"]["x"]
        for commit in shown
        for exp in commit.get("experiments") or []
        for e in exp.get("revs", [])
        if e.get("name")
    }
    assert exps == {"two": 2, "three": 3}

    store = project / "mlruns.db"
    assert store.is_file(), "the runs went elsewhere"
    client = MlflowClient(tracking_uri=f"sqlite:///{store}")
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert sorted(r.data.metrics["toy/x"] for r in runs) == [2.0, 3.0]
    for r in runs:
        assert r.info.status == "FINISHED"
        assert Path(r.info.artifact_uri.removeprefix("file://")).is_relative_to(project / "mlartifacts")
        assert "x.json" in {a.path for a in client.list_artifacts(r.info.run_id)}
    assert not list((project / ".dvc" / "tmp").rglob("mlruns.db"))
