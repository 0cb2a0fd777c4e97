"""The team's S3 storage against a real S3 HTTP endpoint (moto's server on 127.0.0.1, started by the test):
the DVC remote (dvc-s3) with the demo's data, configured with the buckets and variables of
``infra/compose.yaml``'s MinIO. MLflow's artifact store on S3 is tested with a real model in
``test_predict_e2e.py`` (the register stage against a server whose artifacts go to ``s3://``)."""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.support.services_s3 import S3Server, s3_server

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
COMPOSE = ROOT / "infra" / "compose.yaml"


def _compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def _run(cwd: Path, env: dict[str, str], *cmd: str) -> str:
    out = subprocess.run(list(cmd), cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, f"{' '.join(cmd)} in {cwd}:\n{out.stdout}\n{out.stderr}"
    return out.stdout + out.stderr


def _files(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.md5(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_compose_minio_settings_are_the_ones_tested_here() -> None:
    """The MLflow service reads the variables S3Server.client_env() sets, from the buckets MinIO's init makes."""
    services = _compose()["services"]
    mlflow_env = services["mlflow"]["environment"]
    s3_vars = {"MLFLOW_S3_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}
    assert s3_vars <= set(mlflow_env)
    assert s3_vars <= set(S3Server(port=1, log_path=Path("unused")).client_env({}))
    assert "--artifacts-destination=s3://mlflow/artifacts" in services["mlflow"]["command"]
    assert "mc mb --ignore-existing avf/mlflow avf/dvc" in services["minio-buckets"]["command"][0]
    assert "dvc remote add -d minio s3://dvc" in COMPOSE.read_text()
    assert f"boto3=={importlib.metadata.version('boto3')}" in services["mlflow"]["build"]["dockerfile_inline"]


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_dvc_push_to_s3_then_a_fresh_clone_pulls_the_demo_data(tmp_path: Path) -> None:
    """``dvc repro synth`` in a clone (its output matches the committed dvc.lock byte for byte), ``dvc push`` to
    ``s3://dvc``, then a fresh clone of that repository pulls it and ``dvc status`` is up to date."""
    with s3_server(tmp_path) as s3:
        s3.make_bucket("dvc")
        env = s3.client_env({**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "DVC_NO_ANALYTICS": "1"})
        origin = tmp_path / "origin"
        subprocess.run(["git", "clone", "-q", str(ROOT), str(origin)], check=True)
        _run(origin, env, "dvc", "repro", "synth")
        lock_diff = subprocess.run(["git", "diff", "--stat", "--", "dvc.lock"], cwd=origin, capture_output=True)
        assert lock_diff.stdout == b"", "synth's output differs from the committed dvc.lock"

        _run(origin, env, "dvc", "remote", "add", "-d", "minio", "s3://dvc/avf")
        git = ("git", "-c", "user.email=test@example.org", "-c", "user.name=test")
        _run(origin, env, *git, "commit", "-qm", "DVC remote on S3", "--", ".dvc/config")
        pushed = _run(origin, env, "dvc", "push", "synth")
        keys = s3.keys("dvc", "avf/")
        assert f"{len(keys)} files pushed" in pushed and len(keys) > len(_files(origin / "data" / "raw"))
        assert "Cache and remote 'minio' are in sync" in _run(origin, env, "dvc", "status", "--cloud", "synth")

        fresh = tmp_path / "fresh"
        subprocess.run(["git", "clone", "-q", str(origin), str(fresh)], check=True)
        assert not (fresh / "data" / "raw").exists()
        _run(fresh, env, "dvc", "pull", "synth")
        assert "Data and pipelines are up to date" in _run(fresh, env, "dvc", "status", "synth")
        assert _files(fresh / "data" / "raw") == _files(origin / "data" / "raw")
