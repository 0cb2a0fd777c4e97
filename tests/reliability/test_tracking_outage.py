"""An MLflow server outage during a real training stage: ``avf train pretrain`` runs in a subprocess against a
real ``mlflow server`` on 127.0.0.1; the server is stopped after the first epoch and restarted two epochs
later. Every metric reaches the server, in order, and the stage's output equals an uninterrupted run's.

(The buffering logic itself is tested with a metric loop in tests/integration/test_mlflow_server.py.)
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from mlflow import MlflowClient

from avf import tracking
from tests.support import tiny_project
from tests.support.services import mlflow_server
from tests.support.tiny_project import AVF, PARAMS, PRETRAIN

pytestmark = [pytest.mark.reliability, pytest.mark.slow, pytest.mark.timeout(900)]

EPOCHS = 6  # one optimizer step each: the server is down for epochs 2-3, back for 4-6
# measured, not computed: they differ between two runs of the same training
TIMINGS = {"train/clips_per_s"}


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    params = {**PARAMS, "pretrain": {**PARAMS["pretrain"], "epochs": EPOCHS}}
    return tiny_project.prepare(tmp_path_factory.mktemp("outage"), params)


def _wait_for(ready: Callable[[], bool], proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 600
    while not ready():
        assert proc.poll() is None, f"the stage ended too early:\n{log.read_text()[-3000:]}"
        assert time.monotonic() < deadline, "the stage never got there"
        time.sleep(0.05)


def _history(client: MlflowClient, run_id: str) -> dict[str, list[tuple[int, float]]]:
    keys = client.get_run(run_id).data.metrics
    return {k: [(m.step, m.value) for m in client.get_metric_history(run_id, k)] for k in sorted(keys)}


def test_mlflow_outage_during_pretraining_loses_no_metric_and_changes_no_output(project: Path) -> None:
    with mlflow_server(project / "mlflow-server") as srv:
        environ = {**tiny_project.env(project), "MLFLOW_TRACKING_URI": srv.url, tracking.RETRY_ENV: "0.5"}

        def cmd(name: str) -> list[str]:
            return [*PRETRAIN, "--out", f"{name}/model", "--reports", f"{name}/reports", "--storage", f"runs/{name}"]

        tiny_project.avf(project, *cmd("uninterrupted"), environ=environ)

        log = project / "outage.log"
        checkpoint = lambda n: lambda: any((project / "runs/outage").glob(f"*/checkpoint_{n:09d}"))  # noqa: E731
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [AVF, "-p", "params.yaml", *cmd("outage")],
                cwd=project,
                env=environ,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            _wait_for(checkpoint(1), proc, log)
            srv.stop()
            _wait_for(checkpoint(3), proc, log)
            # hold the stage while the server starts (seconds on a loaded box), so that the restart
            # lands before the run ends whatever the machine's speed
            os.killpg(proc.pid, signal.SIGSTOP)
            try:
                srv.start()
            finally:
                os.killpg(proc.pid, signal.SIGCONT)
            assert proc.wait(timeout=600) == 0, log.read_text()[-4000:]
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        text = log.read_text()
        assert "unreachable" in text and "is back" in text, text[-4000:]

        client = MlflowClient(srv.url)
        runs = {
            name: tracking.read_run_file(project / name / "reports" / "mlflow_run.json")["run_id"]
            for name in ("uninterrupted", "outage")
        }
        assert client.get_run(runs["outage"]).info.status == "FINISHED"
        base, outage = _history(client, runs["uninterrupted"]), _history(client, runs["outage"])
        assert outage.keys() == base.keys() and "train/loss" in base
        for key, points in base.items():  # every step, in order
            assert [s for s, _ in outage[key]] == [s for s, _ in points], key
        assert {k for k in base if outage[k] != base[k]} <= TIMINGS, {k: (base[k], outage[k]) for k in base}
        assert len(base["train/loss"]) == EPOCHS

    model = {name: project / name / "model" for name in ("uninterrupted", "outage")}
    assert (model["outage"] / "model.safetensors").read_bytes() == (
        model["uninterrupted"] / "model.safetensors"
    ).read_bytes()
    cards = {name: json.loads((path / "card.json").read_text()) for name, path in model.items()}
    assert cards["outage"].pop("mlflow_run_id") == runs["outage"]  # the card names its own run
    assert cards["outage"] == {k: v for k, v in cards["uninterrupted"].items() if k != "mlflow_run_id"}
    assert json.loads((project / "outage/reports/metrics.json").read_text())["steps"] == EPOCHS
