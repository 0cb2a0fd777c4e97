"""Against a real `mlflow server` on 127.0.0.1: a mid-run outage loses no metric, and registry promotion
serves ``models:/NAME@champion``. Each test starts and stops its own server."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import mlflow
import psutil
import pytest
import yaml
from mlflow import MlflowClient
from typer.testing import CliRunner

from avf import tracking
from avf.config import parse_params
from tests.support.services import mlflow_server, running_mlflow  # noqa: F401  (fixture)

pytestmark = pytest.mark.timeout(420)


class MarkerModel(mlflow.pyfunc.PythonModel):
    """Tiny pyfunc: a constant marker per row, so the test knows which version it loaded."""

    def __init__(self, marker: float):
        self.marker = marker

    def predict(self, context, model_input, params=None):  # no hints: MLflow would validate them
        return [self.marker] * len(model_input)


def _cli(*args: str) -> Any:
    from avf.cli import app

    return CliRunner().invoke(app, list(args), catch_exceptions=False)


def _listening_addresses(pid: int) -> set[str]:
    procs = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
    return {c.laddr.ip for p in procs for c in p.net_connections(kind="inet") if c.status == psutil.CONN_LISTEN}


def test_outage_mid_run_is_buffered_and_replayed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    buffer = tmp_path / "buffer"
    monkeypatch.setenv(tracking.BUFFER_DIR_ENV, str(buffer))
    monkeypatch.setenv(tracking.RETRY_ENV, "0.5")
    params = parse_params({})
    with mlflow_server(tmp_path / "server") as srv:
        assert srv.pid is not None and _listening_addresses(srv.pid) == {"127.0.0.1"}
        monkeypatch.setenv("MLFLOW_TRACKING_URI", srv.url)
        with tracking.stage_run(params, stage="pretrain", sections=("model",)) as run:
            for step in range(5):
                run.log_metrics({"train/loss": float(step)}, step=step)
            assert run.pending == 0

            srv.stop()  # outage 1: training goes on
            t0 = time.monotonic()
            for step in range(5, 15):
                t = time.monotonic()
                run.log_metrics({"train/loss": float(step)}, step=step)
                assert time.monotonic() - t < 10, "a log call must not block on a dead server"
            run.log_params({"during_outage": 1})
            run.log_dict({"x": 1}, "outage.json")
            assert time.monotonic() - t0 < 20
            assert not run.online and run.pending == 12

            srv.start()  # the server returns on the same port and backend
            time.sleep(0.6)
            run.log_metrics({"train/loss": 15.0}, step=15)
            assert run.online and run.pending == 0
            for step in range(16, 20):
                run.log_metrics({"train/loss": float(step)}, step=step)

            srv.stop()  # outage 2 lasts past the end of the run
            for step in range(20, 25):
                run.log_metrics({"train/loss": float(step)}, step=step)
        (left,) = buffer.glob("*.jsonl")

        srv.start()
        last_pid = srv.pid
        client = MlflowClient(srv.url)
        assert client.get_run(run.run_id).info.status == "RUNNING"
        res = _cli("registry", "flush-buffer", "--buffer-dir", str(buffer))
        assert res.exit_code == 0, res.output
        assert f"{run.run_id}: flushed" in res.output and "run ended FINISHED" in res.output
        r = client.get_run(run.run_id)
        assert r.info.status == "FINISHED"
        history = client.get_metric_history(run.run_id, "train/loss")
        assert [(m.step, m.value) for m in history] == [(s, float(s)) for s in range(25)]
        assert r.data.params["during_outage"] == "1" and r.data.params["model.size"] == "tiny"
        assert "outage.json" in {a.path for a in client.list_artifacts(run.run_id)}
        assert not left.exists() and not list(buffer.glob("*"))
    assert last_pid is not None and not psutil.pid_exists(last_pid), "the test stops its server"


def test_promotion_through_the_server(
    tmp_path: Path,
    running_mlflow: Any,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(tracking.BUFFER_DIR_ENV, str(tmp_path / "buffer"))
    name = "avf-mae-pp-it"
    params_file = tmp_path / "params.yaml"
    params_file.write_text(yaml.safe_dump({"tracking": {"registered_model": name}}))
    params = parse_params({})
    run_files = []
    for i, (marker, uar) in enumerate(((1.0, 0.6), (2.0, 0.8), (3.0, 0.7))):
        with tracking.stage_run(params, stage="finetune", sections=("model",), dataset="ravdess") as run:
            run.log_metrics({"test/uar": uar}, step=1)
            run.log_model(MarkerModel(marker), name="model", pip_requirements=["mlflow"])
        run_files.append(tmp_path / f"run{i}.json")
        tracking.write_run_file(run_files[-1], run)
        assert json.loads(run_files[-1].read_text())["model_uri"].startswith("models:/m-")

    p = ("--params", str(params_file), "registry")
    for i, run_file in enumerate(run_files):
        res = _cli(*p, "register", "--from-run-file", str(run_file))
        assert res.exit_code == 0 and f"version {i + 1} as @candidate" in res.output, res.output
        res = _cli(*p, "promote", "--require")
        if i == 0:
            assert res.exit_code == 0 and "promoted v1 to @champion" in res.output
        elif i == 1:
            assert res.exit_code == 0 and "promoted v2" in res.output and "0.8 > champion v1 0.6" in res.output
        else:
            assert res.exit_code == 1 and "not promoted" in res.output and "does not beat" in res.output

    assert tracking.get_alias_version(name, "champion") == 2
    assert tracking.get_alias_version(name, "candidate") == 3
    champion = mlflow.pyfunc.load_model(f"models:/{name}@champion")
    assert list(champion.predict([0.0])) == [2.0]
    res = _cli(*p, "list", name)
    assert res.exit_code == 0 and "@champion" in res.output
