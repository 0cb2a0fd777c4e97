"""Prefect flows against a real local Prefect server (127.0.0.1) and a throwaway DVC project.

The server is started once for the module (~20-30 s on a new database). The toy project has a
``shards`` foreach stage and an ``evaluate`` stage (python scripts with params, a metric and
``mlflow_run.json`` files), so the flows run real ``dvc repro`` / ``dvc exp run`` commands.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
import yaml

from pipelines import summary
from pipelines.proc import CommandFailed, stream_command
from tests.support.services import mlflow_server
from tests.support.services_prefect import TestPrefectServer, prefect_server, use_prefect_api
from tests.support.services_s3 import s3_server

ROOT = Path(__file__).resolve().parents[2]
DVC = str(Path(sys.executable).with_name("dvc"))

STEP = """
import json, sys
from pathlib import Path
import yaml

p = yaml.safe_load(open("params.yaml"))
what = sys.argv[1]
if what == "shards":
    item = sys.argv[2]
    if p["prep"]["fail"]:
        print(f"boom: prep.fail is set (shard {item})", file=sys.stderr)
        sys.exit(3)
    print(f"STAGE-LOG shards {item} x={p['prep']['x']}")
    Path(f"shards_{item}.txt").write_text(str(p["prep"]["x"]))
else:
    x = sum(int(Path(f"shards_{i}.txt").read_text()) for i in ("a", "b"))
    score = x * p["evalp"]["w"]
    print(f"STAGE-LOG evaluate score={score}")
    for d in ("reports/eval", "reports/stage2"):
        Path(d).mkdir(parents=True, exist_ok=True)
    json.dump({"test": {"score": score}}, open("reports/eval/metrics.json", "w"))
    run = {"run_id": f"run{score}", "experiment_id": "7", "tracking_uri": "http://127.0.0.1:5999"}
    json.dump(run, open("reports/eval/mlflow_run.json", "w"))
    json.dump({"skipped": True}, open("reports/stage2/mlflow_run.json", "w"))
"""

# A stand-in `avf` CLI: no `report ablations` (as before the lead adds it) and a registry promote.
FAKE_AVF = """#!/bin/sh
if [ "$1" = registry ] && [ "$2" = promote ]; then
  out=""; while [ $# -gt 0 ]; do [ "$1" = --out ] && out="$2"; shift; done
  echo "toy-model: promoted v2 to @champion: test/score 4.0 > 2.0"
  printf '{"promoted": true, "candidate_version": 2, "reason": "test/score 4.0 > 2.0"}' > "$out"
  exit 0
fi
echo "Error: No such command '$2'." >&2
exit 2
"""


def _git(cwd: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True)


def make_project(path: Path, evaluate: str | None = None) -> Path:
    """git + dvc project with stages shards@a, shards@b (params: prep) -> evaluate (params: evalp).

    ``evaluate``: another script for the evaluate stage (``evaluate.py``) than step.py's.
    """
    path.mkdir(parents=True)
    (path / "step.py").write_text(STEP)
    evaluate_cmd = [sys.executable, "step.py", "evaluate"]
    if evaluate is not None:
        (path / "evaluate.py").write_text(evaluate)
        evaluate_cmd = [sys.executable, "evaluate.py"]
    (path / "params.yaml").write_text("prep:\n  x: 1\n  fail: false\nevalp:\n  w: 2\n")
    py = sys.executable
    stages = {
        "stages": {
            "shards": {
                "foreach": ["a", "b"],
                "do": {
                    "cmd": f"{py} step.py shards ${{item}}",
                    "deps": ["step.py"],
                    "params": ["prep"],
                    "outs": ["shards_${item}.txt"],
                },
            },
            "evaluate": {
                "cmd": " ".join(evaluate_cmd),
                "deps": [evaluate_cmd[1], "shards_a.txt", "shards_b.txt"],
                "params": ["evalp"],
                "outs": [
                    {"reports/eval/mlflow_run.json": {"cache": False}},
                    {"reports/stage2/mlflow_run.json": {"cache": False}},
                ],
                "metrics": [{"reports/eval/metrics.json": {"cache": False}}],
            },
        }
    }
    (path / "dvc.yaml").write_text(yaml.safe_dump(stages, sort_keys=False))
    _git(path, "init", "-q", "-b", "main")
    _git(path, "config", "user.email", "test@example.org")
    _git(path, "config", "user.name", "test")
    subprocess.run([DVC, "init", "-q"], cwd=path, check=True)
    _git(path, "add", "-A")
    _git(path, "commit", "-qm", "toy project")
    return path


def exp_show(project: Path) -> dict[str, summary.ExpRecord]:
    out = subprocess.run([DVC, "exp", "show", "--json"], cwd=project, check=True, capture_output=True, text=True)
    return summary.experiments_from_dvc_show(json.loads(out.stdout))


# ---------------------------------------------------------------------------------------------
# no server: streaming and summaries
# ---------------------------------------------------------------------------------------------
def test_stream_command_delivers_lines_while_running(tmp_path: Path) -> None:
    code = (
        "import sys, time\n"
        "print('first', flush=True)\n"
        "print('to-stderr', file=sys.stderr, flush=True)\n"
        "time.sleep(1.5)\n"
        "print('10%\\r50%\\r100%')\n"
    )
    seen: list[tuple[float, str]] = []
    start = time.monotonic()
    result = stream_command([sys.executable, "-c", code], tmp_path, lambda s: seen.append((time.monotonic(), s)))
    end = time.monotonic()
    assert result.returncode == 0
    assert [s for _, s in seen] == ["first", "to-stderr", "100%"]
    assert seen[0][0] - start < end - start - 1.0  # logged long before the command ended


class _ListHandler(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def test_run_dvc_streams_each_line_and_raises_with_the_tail(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from pipelines.tasks import fallback_log, run_dvc

    fake = tmp_path / "fake-dvc"
    fake.write_text(
        f"#!{sys.executable}\nimport sys\n"
        "for i in range(60): print(f'line {i} of', ' '.join(sys.argv[1:]), flush=True)\n"
        "print('ERROR: stage failed', file=sys.stderr); sys.exit(5)\n"
    )
    fake.chmod(0o755)
    monkeypatch.setenv("AVF_DVC", str(fake))
    handler = _ListHandler()
    fallback_log.addHandler(handler)  # outside a flow run, run_dvc logs to the "pipelines" logger
    monkeypatch.setattr(fallback_log, "level", logging.INFO)
    try:
        with pytest.raises(CommandFailed) as err:
            run_dvc.fn(["repro", "evaluate"], tmp_path)
    finally:
        fallback_log.removeHandler(handler)
    logged = handler.messages
    assert logged[0].startswith(f"$ {fake} repro evaluate")
    assert logged[1:] == [f"line {i} of repro evaluate" for i in range(60)] + ["ERROR: stage failed"]
    assert err.value.returncode == 5
    assert "ERROR: stage failed" in str(err.value) and "line 59 of repro evaluate" in str(err.value)
    assert "line 0 of" not in str(err.value)  # only the tail


def test_report_ablations_passes_the_names_when_the_cli_takes_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pipelines.tasks import report_ablations

    fake, args = tmp_path / "avf-with-report", tmp_path / "args.txt"
    fake.write_text(
        "#!/bin/sh\n"
        'if [ "$3" = --help ]; then echo " Usage: avf report ablations [OPTIONS] [experiments]..."; exit 0; fi\n'
        f'shift 2; echo "$@" > {args}\n'
    )
    fake.chmod(0o755)
    monkeypatch.setenv("AVF_CLI", str(fake))
    assert report_ablations.fn(tmp_path, ["x2", "baseline"], "baseline", "reports/abl") == "reports/abl"
    assert args.read_text().split() == ["--baseline", "baseline", "--out", "reports/abl", "x2", "baseline"]
    fake.write_text('#!/bin/sh\necho "Error: No such command ablations" >&2; exit 2\n')
    assert report_ablations.fn(tmp_path, ["x2"], "baseline", "reports/abl") is None  # tolerated, logged


def test_summaries_from_run_files_and_dvc_json(tmp_path: Path) -> None:
    for stage, data in {
        "finetune": {"run_id": "abc", "experiment_id": "3", "tracking_uri": "http://mlflow:5000/"},
        "pretrain": {"run_id": "def", "experiment_id": "1", "tracking_uri": "sqlite:////x/mlruns.db"},
        "intermediate": {"skipped": True},
    }.items():
        (tmp_path / "reports" / stage).mkdir(parents=True)
        (tmp_path / "reports" / stage / "mlflow_run.json").write_text(json.dumps(data))
    (tmp_path / "reports" / "broken").mkdir()
    (tmp_path / "reports" / "broken" / "mlflow_run.json").write_text("{not json")
    links = {link.stage: link for link in summary.read_run_links(tmp_path)}
    assert set(links) == {"finetune", "pretrain", "intermediate"}
    assert links["finetune"].url == "http://mlflow:5000/#/experiments/3/runs/abc"
    assert links["pretrain"].url is None and links["intermediate"].skipped
    table = summary.links_table(links.values())
    assert "[abc](http://mlflow:5000/#/experiments/3/runs/abc)" in table and "`def` (experiment 1)" in table

    shown = {"": {"data": {"m.json": {"data": {"test": {"uar": 0.5, "ok": True}, "n": 3}}}}}
    assert summary.metrics_from_dvc_show(shown) == {"m.json": {"test.uar": 0.5, "n": 3.0}}
    rec = summary.ExpRecord
    exps = {
        "base": rec("base", "r1", "main", {"m.json": {"uar": 0.5}}, {"params.yaml": {"a": 1, "b": "x"}}),
        "abl": rec("abl", "r2", "main", {"m.json": {"uar": 0.75}}, {"params.yaml": {"a": 2, "b": "x"}}),
    }
    assert "| `m.json` | uar | 0.5 | 0.75 (+0.25) |" in summary.ablation_table(exps, ["base", "abl"], "base")
    assert summary.changed_params(exps, ["base", "abl"]).splitlines()[-1] == "| params.yaml:a | 1 | 2 |"


# ---------------------------------------------------------------------------------------------
# a real Prefect server
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestPrefectServer]:
    with prefect_server(tmp_path_factory.mktemp("prefect")) as srv, use_prefect_api(srv.api_url):
        yield srv


@pytest.fixture
def fake_avf(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "fake-avf"
    path.write_text(FAKE_AVF)
    path.chmod(0o755)
    monkeypatch.setenv("AVF_CLI", str(path))
    return path


def _flow_run_id(state: Any) -> UUID:
    return state.state_details.flow_run_id


def _api(flow_run_id: UUID, wait_for: str | None = None) -> tuple[str, list[str], list[str]]:
    """(state type, log messages, markdown artifacts) of a flow run, read back from the server."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, LogFilter, LogFilterFlowRunId
    from prefect.logging.handlers import APILogHandler

    APILogHandler().flush()
    deadline = time.monotonic() + 30
    with get_client(sync_client=True) as client:
        while True:
            run = client.read_flow_run(flow_run_id)
            logs = client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])))
            messages = [log.message for log in logs]
            if wait_for is None or any(wait_for in m for m in messages) or time.monotonic() > deadline:
                break
            time.sleep(0.5)  # logs are shipped in batches
        arts = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        )
    assert run.state is not None
    return run.state.type.value, messages, [str(a.data) for a in arts if a.type == "markdown"]


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_full_pipeline_repro_then_experiment(server: TestPrefectServer, tmp_path: Path) -> None:
    from pipelines.flows import full_pipeline

    project = make_project(tmp_path / "proj")
    state = full_pipeline(project_dir=str(project), return_state=True)
    assert state.is_completed(), state.message
    assert (project / "shards_a.txt").read_text() == "1"
    assert json.loads((project / "reports/eval/metrics.json").read_text()) == {"test": {"score": 4}}
    run_state, logs, artifacts = _api(_flow_run_id(state), wait_for="STAGE-LOG evaluate score=4")
    assert run_state == "COMPLETED"
    assert {"STAGE-LOG shards a x=1", "STAGE-LOG shards b x=1", "STAGE-LOG evaluate score=4"} <= set(logs)
    assert any(m.startswith("no DVC remote configured") for m in logs)
    (art,) = artifacts
    assert "| `reports/eval/metrics.json` | test.score | 4 |" in art
    assert "[run4](http://127.0.0.1:5999/#/experiments/7/runs/run4)" in art and "| stage2 | skipped |" in art

    _git(project, "add", "-A")
    _git(project, "commit", "-qm", "lock")
    state = full_pipeline(exp_name="x3", overrides=["prep.x=3"], project_dir=str(project), return_state=True)
    assert state.is_completed(), state.message
    exps = exp_show(project)
    assert exps["x3"].metrics["reports/eval/metrics.json"] == {"test.score": 12.0}
    assert exps["x3"].params["params.yaml"]["prep.x"] == 3
    run_state, logs, artifacts = _api(_flow_run_id(state), wait_for="STAGE-LOG evaluate score=12")
    assert run_state == "COMPLETED" and "STAGE-LOG shards a x=3" in logs
    assert "test.score | 12 |" in artifacts[0] and "dvc exp run -n x3 -S prep.x=3" in artifacts[0]


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_failing_stage_fails_the_flow_with_its_error_in_the_log(server: TestPrefectServer, tmp_path: Path) -> None:
    from pipelines.flows import full_pipeline

    project = make_project(tmp_path / "proj")
    state = full_pipeline(exp_name="bad", overrides=["prep.fail=true"], project_dir=str(project), return_state=True)
    assert state.is_failed()
    run_state, logs, artifacts = _api(_flow_run_id(state), wait_for="boom")
    assert run_state == "FAILED"
    assert any("boom: prep.fail is set" in m for m in logs)  # streamed from the stage's stderr
    assert any("exited with" in m and "boom: prep.fail is set" in m for m in logs)  # the task's error tail
    assert artifacts == []


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_ablation_batch_runs_each_from_the_same_params(
    server: TestPrefectServer, tmp_path: Path, fake_avf: Path
) -> None:
    from pipelines.flows import ablation_batch

    project = make_project(tmp_path / "proj")
    experiments = {"baseline": [], "x2": ["prep.x=2"], "w3": ["evalp.w=3"]}
    state = ablation_batch(experiments=experiments, project_dir=str(project), return_state=True)
    assert state.is_completed(), state.message
    exps = exp_show(project)
    score = {n: exps[n].metrics["reports/eval/metrics.json"]["test.score"] for n in experiments}
    assert score == {"baseline": 4.0, "x2": 8.0, "w3": 6.0}  # w3 did not inherit prep.x=2
    assert yaml.safe_load((project / "params.yaml").read_text())["prep"]["x"] == 1  # baseline ran last
    _, logs, (art,) = _api(_flow_run_id(state), wait_for="skipping the comparison report")
    assert any("`avf report ablations` is not available" in m for m in logs)
    assert "| `reports/eval/metrics.json` | test.score | 4 | 8 (+4) | 6 (+2) |" in art
    assert "| params.yaml:prep.x | 1 | 2 | 1 |" in art


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_ingest_and_nightly_eval(server: TestPrefectServer, tmp_path: Path, fake_avf: Path) -> None:
    from pipelines.flows import ingest, nightly_eval

    project = make_project(tmp_path / "proj")
    state = ingest(project_dir=str(project), return_state=True)
    assert state.is_completed(), state.message
    assert (project / "shards_b.txt").exists() and not (project / "reports").exists()  # shards only

    state = nightly_eval(project_dir=str(project), targets=["evaluate"], return_state=True)
    assert state.is_completed(), state.message
    run_state, logs, (art,) = _api(_flow_run_id(state), wait_for="registry decision")
    assert run_state == "COMPLETED"
    assert "registry decision: promoted: test/score 4.0 > 2.0" in logs
    assert "toy-model: promoted v2 to @champion: test/score 4.0 > 2.0" in logs  # the CLI's own line
    assert "**promoted**" in art and "test.score | 4 |" in art


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_prefect_yaml_deploys_four_scheduled_deployments(server: TestPrefectServer) -> None:
    from prefect.client.orchestration import get_client

    env = server.client_env()
    prefect = str(Path(sys.executable).with_name("prefect"))
    for pool in ("avf-gpu", "avf-cpu"):
        subprocess.run([prefect, "work-pool", "create", pool, "--type", "process"], env=env, check=True)
    out = subprocess.run(
        [prefect, "--no-prompt", "deploy", "--prefect-file", "infra/prefect.yaml", "--all"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    with get_client(sync_client=True) as client:
        deployments = {d.name: d for d in client.read_deployments() if d.work_pool_name in ("avf-gpu", "avf-cpu")}
        for d in deployments.values():  # leave the server as we found it (the serve test uses the same names)
            client.delete_deployment(d.id)
        for pool in ("avf-gpu", "avf-cpu"):
            client.delete_work_pool(pool)
    assert set(deployments) == {"full-pipeline", "ingest-preprocess", "nightly-eval", "ablation-batch"}
    nightly = deployments["nightly-eval"]
    assert nightly.work_pool_name == "avf-gpu" and deployments["ingest-preprocess"].work_pool_name == "avf-cpu"
    (sched,) = nightly.schedules
    assert sched.schedule.cron == "0 3 * * *" and sched.schedule.timezone == "UTC"
    assert deployments["ingest-preprocess"].schedules[0].schedule.cron == "0 2 * * 1"
    assert deployments["full-pipeline"].schedules == []
    steps = json.dumps(nightly.pull_steps)
    assert "git_clone" in steps and "dvc pull --allow-missing" in steps
    assert deployments["ablation-batch"].parameters["experiments"]["no-iavcl"] == ["model.iavcl=false"]


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_serve_runs_a_scheduled_deployment(server: TestPrefectServer, tmp_path: Path) -> None:
    from prefect.client.orchestration import get_client
    from prefect.deployments import run_deployment

    from avf.services import stop_pid

    project = make_project(tmp_path / "proj")
    log = (tmp_path / "serve.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipelines.serve", "--project-dir", str(project), "--timezone", "Europe/Paris"],
        cwd=ROOT,
        env=server.client_env({**os.environ, "PYTHONPATH": str(ROOT)}),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 90
        with get_client(sync_client=True) as client:
            while time.monotonic() < deadline:
                names = {d.name for d in client.read_deployments() if d.parameters.get("project_dir") == str(project)}
                if len(names) == 4:
                    break
                assert proc.poll() is None, (tmp_path / "serve.log").read_text()
                time.sleep(0.5)
            assert names == {"full-pipeline", "ingest-preprocess", "nightly-eval", "ablation-batch"}
            nightly = client.read_deployment_by_name("nightly-eval/nightly-eval")
        # serve deployments are named <flow>/<deployment>; a later deploy from prefect.yaml may share names
        assert any(s.schedule.cron == "0 3 * * *" and s.schedule.timezone == "Europe/Paris" for s in nightly.schedules)
        run = run_deployment("ingest/ingest-preprocess", timeout=180, poll_interval=1)
        assert run.state is not None and run.state.is_completed(), (tmp_path / "serve.log").read_text()[-3000:]
        assert (project / "shards_a.txt").exists() and not (project / "reports").exists()
    finally:
        stop_pid(proc.pid, timeout=20, proc=proc)
        log.close()
    assert proc.poll() is not None


def test_flow_module_imports_no_stage_code() -> None:
    """pipelines drives stages through DVC: it must not import avf.data / avf.train / avf.models."""
    code = (
        "import sys, pipelines.flows, pipelines.serve; "
        "bad = [m for m in sys.modules if m.startswith(('avf.data', 'avf.train', 'avf.models', 'torch'))]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


# ---------------------------------------------------------------------------------------------
# a Prefect worker running a deployment of infra/prefect.yaml (git clone + dvc pull from S3)
# ---------------------------------------------------------------------------------------------
# The toy project's evaluate stage with a real MLflow run on the tracking server of the environment.
EVALUATE_WITH_MLFLOW = """
import json
from pathlib import Path
import mlflow, yaml

p = yaml.safe_load(open("params.yaml"))
score = sum(int(Path(f"shards_{i}.txt").read_text()) for i in ("a", "b")) * p["evalp"]["w"]
mlflow.set_experiment("toy-worker")
with mlflow.start_run() as run:
    mlflow.log_metric("test/score", score)
print(f"STAGE-LOG evaluate score={score}")
for d in ("reports/eval", "reports/stage2"):
    Path(d).mkdir(parents=True, exist_ok=True)
json.dump({"test": {"score": score}}, open("reports/eval/metrics.json", "w"))
info = {"run_id": run.info.run_id, "experiment_id": run.info.experiment_id, "tracking_uri": mlflow.get_tracking_uri()}
json.dump(info, open("reports/eval/mlflow_run.json", "w"))
json.dump({"skipped": True}, open("reports/stage2/mlflow_run.json", "w"))
"""


def _origin(path: Path, env: dict[str, str]) -> Path:
    """The toy project as the team's git origin: the flows and ``infra/prefect.yaml`` of this repository, a DVC
    remote on ``s3://dvc/toy``, and the shards stages run and pushed (evaluate is left to the worker)."""
    project = make_project(path, evaluate=EVALUATE_WITH_MLFLOW)
    shutil.copytree(ROOT / "pipelines", project / "pipelines", ignore=shutil.ignore_patterns("__pycache__"))
    (project / "infra").mkdir()
    shutil.copy(ROOT / "infra" / "prefect.yaml", project / "infra" / "prefect.yaml")
    subprocess.run([DVC, "remote", "add", "-d", "minio", "s3://dvc/toy"], cwd=project, env=env, check=True)
    subprocess.run([DVC, "repro", "shards"], cwd=project, env=env, check=True, capture_output=True)
    subprocess.run([DVC, "push"], cwd=project, env=env, check=True, capture_output=True)
    _git(project, "add", "-A")
    _git(project, "commit", "-qm", "flows, deployments, S3 remote, shards")
    return project


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_a_worker_runs_a_deployment_from_a_git_clone_and_the_s3_remote(
    server: TestPrefectServer, tmp_path: Path
) -> None:
    """``prefect worker start`` on a process pool picks up a run of infra/prefect.yaml's full-pipeline
    deployment: its pull steps clone the origin and ``dvc pull`` the shards from S3 (moto's server), the flow
    runs ``dvc repro`` (shards up to date, evaluate logs a run to a real MLflow server) and publishes its
    summary. State, logs and artifact are read back from the Prefect server, the run from MLflow."""
    from mlflow import MlflowClient
    from prefect.client.orchestration import get_client
    from prefect.deployments import run_deployment

    from avf.services import stop_pid

    prefect = str(Path(sys.executable).with_name("prefect"))
    with s3_server(tmp_path / "s3") as s3, mlflow_server(tmp_path / "mlflow") as tracking:
        s3.make_bucket("dvc")
        base = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
        env = s3.client_env(server.client_env({**base, "MLFLOW_TRACKING_URI": tracking.url, "DVC_NO_ANALYTICS": "1"}))
        origin = _origin(tmp_path / "origin", env)

        def cli(*args: str, cwd: Path = ROOT) -> None:
            out = subprocess.run([prefect, *args], cwd=cwd, env=env, capture_output=True, text=True)
            assert out.returncode == 0, f"prefect {' '.join(args)}:\n{out.stdout}\n{out.stderr}"

        cli("work-pool", "create", "avf-gpu", "--type", "process")
        worker_log = tmp_path / "worker.log"
        try:
            cli("variable", "set", "avf_git_url", f"file://{origin}", "--overwrite")
            cli("variable", "set", "avf_git_branch", "main", "--overwrite")
            cli("--no-prompt", "deploy", "--prefect-file", "infra/prefect.yaml", "--name", "full-pipeline", cwd=origin)
            flow_run = run_deployment("full-pipeline/full-pipeline", timeout=0)
            (tmp_path / "worker").mkdir()
            with worker_log.open("wb") as out:
                worker = subprocess.Popen(
                    [prefect, "worker", "start", "--pool", "avf-gpu", "--run-once"],
                    cwd=tmp_path / "worker",
                    env=env,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            try:
                assert worker.wait(timeout=450) == 0, worker_log.read_text()[-4000:]
            finally:
                stop_pid(worker.pid, timeout=20, proc=worker)
        finally:
            with get_client(sync_client=True) as client:
                for d in client.read_deployments():
                    if d.work_pool_name == "avf-gpu":
                        client.delete_deployment(d.id)
                client.delete_work_pool("avf-gpu")
                for name in ("avf_git_url", "avf_git_branch"):
                    client.delete_variable_by_name(name)

        state, logs, artifacts = _api(flow_run.id, wait_for="STAGE-LOG evaluate score=4")
        worker_text = worker_log.read_text()
        assert state == "COMPLETED", worker_text[-4000:]
        assert "Deployment step 'git_clone' completed successfully" in worker_text, worker_text[-4000:]
        assert "1 file fetched and 2 files added" in worker_text, worker_text[-4000:]  # dvc pull from S3
        assert not any(m.startswith("STAGE-LOG shards") for m in logs), "shards came from S3, not rebuilt"
        assert any("Stage 'shards@a' didn't change, skipping" in m for m in logs), logs
        assert "STAGE-LOG evaluate score=4" in logs
        assert not (origin / "reports").exists(), "the flow ran in the worker's clone, not in the origin"
        (art,) = artifacts
        assert "| `reports/eval/metrics.json` | test.score | 4 |" in art
        link = re.search(rf"\[(\w+)\]\({re.escape(tracking.url)}/#/experiments/\d+/runs/\1\)", art)
        assert link is not None, art
        run = MlflowClient(tracking.url).get_run(link.group(1))
        assert run.data.metrics["test/score"] == 4.0 and run.info.status == "FINISHED"
