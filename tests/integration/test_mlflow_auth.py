"""Against a real ``mlflow server --app-name basic-auth`` on 127.0.0.1 (its own SQLite backend, user database,
auth config and secret key; ``default_permission = NO_PERMISSIONS``): requests need a login, the admin creates
users, a user reaches only what it created or was granted, and ``avf`` logs through the server with nothing
but ``MLFLOW_TRACKING_URI`` and ``MLFLOW_TRACKING_USERNAME`` / ``MLFLOW_TRACKING_PASSWORD``. Credentials the
server refuses end ``avf`` with an error naming them instead of being buffered like an outage.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import yaml
from mlflow import MlflowClient
from mlflow.server.auth.client import AuthServiceClient

from avf import tracking
from avf.config import parse_params
from avf.services import MlflowServer, write_auth_config
from tests.support.services import mlflow_server

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

AVF = str(Path(sys.executable).with_name("avf"))
ADMIN = ("admin", "admin-" + secrets.token_hex(8))
ALICE = ("alice", "alice-" + secrets.token_hex(8))
BOB = ("bob", "bob-" + secrets.token_hex(8))
API = "/api/2.0/mlflow"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    """One basic-auth server for the module, with alice and bob created by the admin through the auth API."""
    work = tmp_path_factory.mktemp("mlflow-auth")
    config = write_auth_config(
        work / "auth.ini", admin_user=ADMIN[0], default_permission="NO_PERMISSIONS", admin_password=ADMIN[1]
    )
    with mlflow_server(work, auth_config=config, secret_key=secrets.token_hex(16)) as srv:
        with pytest.MonkeyPatch.context() as mp:
            _login(mp, ADMIN)
            admin = AuthServiceClient(srv.url)
            for user, password in (ALICE, BOB):
                assert admin.create_user(user, password).username == user
        yield srv


def _login(mp: pytest.MonkeyPatch, user: tuple[str, str]) -> None:
    mp.setenv("MLFLOW_TRACKING_USERNAME", user[0])
    mp.setenv("MLFLOW_TRACKING_PASSWORD", user[1])


def _status(method: str, url: str, user: tuple[str, str] | None, **kwargs: object) -> int:
    return requests.request(method, url, auth=user, timeout=30, **kwargs).status_code  # type: ignore[arg-type]


def test_logins_are_required_and_users_reach_only_what_they_own_or_were_granted(
    server: MlflowServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = server.url
    search = (url + API + "/experiments/search", {"params": {"max_results": 10}})
    assert _status("GET", search[0], None, **search[1]) == 401
    assert _status("GET", search[0], (ALICE[0], "wrong-password-1"), **search[1]) == 401
    assert _status("GET", url + "/health", None) == 200  # health checks need no login

    _login(monkeypatch, ALICE)
    alice = MlflowClient(url)
    exp_id = alice.create_experiment("alice-private")
    run_id = alice.create_run(exp_id, run_name="alice-run").info.run_id
    alice.log_metric(run_id, "uar", 0.5)
    alice.set_terminated(run_id)
    alice.create_registered_model("alice-model")
    version = alice.create_model_version("alice-model", f"runs:/{run_id}/model", run_id=run_id)
    assert version.version == "1" and alice.get_run(run_id).data.metrics == {"uar": 0.5}

    exp, run, model = {"experiment_id": exp_id}, {"run_id": run_id}, {"name": "alice-model"}
    bob_calls = {
        "read experiment": ("GET", API + "/experiments/get", {"params": exp}),
        "rename experiment": ("POST", API + "/experiments/update", {"json": {**exp, "new_name": "x"}}),
        "read run": ("GET", API + "/runs/get", {"params": run}),
        "log to run": ("POST", API + "/runs/log-metric", {"json": {**run, "key": "m", "value": 1, "timestamp": 0}}),
        "read model": ("GET", API + "/registered-models/get", {"params": model}),
        "edit model": ("PATCH", API + "/registered-models/update", {"json": {**model, "description": "x"}}),
    }
    refused = {what: _status(method, url + path, BOB, **kw) for what, (method, path, kw) in bob_calls.items()}
    assert refused == dict.fromkeys(bob_calls, 403)
    listed = requests.get(search[0], auth=BOB, timeout=30, **search[1])  # type: ignore[arg-type]
    assert listed.status_code == 200 and "alice-private" not in listed.text

    _login(monkeypatch, ADMIN)
    AuthServiceClient(url).grant_user_permission(BOB[0], "experiment", exp_id, "READ")
    method, path, kw = bob_calls["read experiment"]
    assert _status(method, url + path, BOB, **kw) == 200
    method, path, kw = bob_calls["rename experiment"]
    assert _status(method, url + path, BOB, **kw) == 403  # READ does not allow editing


def _avf_env(server: MlflowServer, tmp: Path, user: tuple[str, str]) -> dict[str, str]:
    """The environment of an ``avf`` subprocess: the server and a login, nothing else about MLflow."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "AVF_MLFLOW", "DVC_EXP"))}
    env |= {"MLFLOW_TRACKING_URI": server.url, "MLFLOW_TRACKING_USERNAME": user[0]}
    env |= {"MLFLOW_TRACKING_PASSWORD": user[1], tracking.BUFFER_DIR_ENV: str(tmp / "buffer")}
    return env


def _data_stage(tmp: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``avf data manifest`` on one raw clip that the faces stage never saw: a real stage that records an
    MLflow run with metrics and artifacts, in seconds (the clip counts as failed; max_fail_frac allows it)."""
    (tmp / "raw" / "spk1").mkdir(parents=True, exist_ok=True)
    (tmp / "raw" / "spk1" / "happy.mp4").touch()
    for folder in ("faces", "audio"):
        (tmp / folder).mkdir(exist_ok=True)
    params = {
        "data": {
            "datasets": {"demo": {"adapter": "folder", "raw_dir": str(tmp / "raw"), "roles": ["pretrain"]}},
            "target": "demo",
            "workers": 1,
            "max_fail_frac": 1.0,
        },
        "tracking": {"log_data_stages": True},
    }
    (tmp / "params.yaml").write_text(yaml.safe_dump(params))
    args = ["--params", "params.yaml", "data", "manifest", "-d", "demo", "--faces", "faces", "--audio", "audio"]
    return subprocess.run(
        [AVF, *args, "--out", "manifest.parquet", "--reports", "reports"],
        cwd=tmp, env=env, capture_output=True, text=True, timeout=180,
    )  # fmt: skip


def test_avf_logs_through_the_server_with_the_login_from_the_environment(
    server: MlflowServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = _data_stage(tmp_path, _avf_env(server, tmp_path, ALICE))
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]

    _login(monkeypatch, ALICE)
    client = MlflowClient(server.url)
    exp = client.get_experiment_by_name(f"{parse_params({}).tracking.experiment_prefix}/data")
    assert exp is not None
    (run,) = client.search_runs([exp.experiment_id], "attributes.run_name = 'manifest-demo'")
    assert run.info.status == "FINISHED" and run.data.metrics["failed"] == 1.0
    assert {a.path for a in client.list_artifacts(run.info.run_id, "report")} == {
        "report/summary.json",
        "report/failures.csv",
    }  # uploaded through the server's artifact proxy, with the same login
    assert not list((tmp_path / "buffer").glob("*.jsonl"))  # nothing left waiting
    assert _status("GET", server.url + API + "/runs/get", BOB, params={"run_id": run.info.run_id}) == 403


def test_avf_with_a_wrong_password_fails_at_once_naming_the_login(server: MlflowServer, tmp_path: Path) -> None:
    t0 = time.monotonic()
    out = _data_stage(tmp_path, _avf_env(server, tmp_path, (ALICE[0], "not-" + ALICE[1])))
    took = time.monotonic() - t0
    refused = f"TrackingAuthError: MLflow tracking server {server.url} rejected the login of MLFLOW_TRACKING_USERNAME"
    assert out.returncode != 0 and f"{refused}=alice (HTTP 401)" in out.stderr, out.stderr[-3000:]
    assert took < 60, f"{took:.0f} s: a refused login must not be retried like an outage"
    assert not list((tmp_path / "buffer").glob("*.jsonl"))


def test_a_login_refused_mid_run_is_an_error_and_its_entries_wait_for_the_right_one(
    server: MlflowServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before, a 401 counted as an outage: the run went on "offline" and its data waited in the buffer
    for a server that was up all along."""
    buffer = tmp_path / "buffer"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", server.url)
    _login(monkeypatch, ALICE)
    refused = pytest.raises(tracking.TrackingAuthError, match=r"MLFLOW_TRACKING_USERNAME=alice \(HTTP 401\)")
    opened = tracking.stage_run(parse_params({}), stage="pretrain", sections=("model",), buffer_dir=buffer)
    with refused, opened as run:
        run.log_metrics({"train/loss": 1.0}, step=0)
        monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "changed-" + ALICE[1])  # e.g. rotated under the run
        run.log_metrics({"train/loss": 0.5}, step=1)
    assert run.online and run.pending > 0  # not taken for an outage, and nothing dropped
    assert len(list(buffer.glob("*.jsonl"))) == 1

    _login(monkeypatch, ALICE)
    (report,) = tracking.flush_buffers(buffer)
    assert report.state == "flushed" and report.end_status == "FAILED"
    client = MlflowClient(server.url)
    finished = client.get_run(run.run_id)
    assert finished.info.status == "FAILED" and "TrackingAuthError" in finished.data.tags["avf.error"]
    assert [m.value for m in client.get_metric_history(run.run_id, "train/loss")] == [1.0, 0.5]
