"""avf.tracking on an embedded SQLite store: run contents, end states, buffering, registry, CLI."""

from __future__ import annotations

import inspect
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
import pytest
import yaml
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from typer.testing import CliRunner

from avf import services, tracking
from avf.config import Params, parse_params, section_hash
from avf.runtime.lifecycle import StageTerminated
from avf.tracking.buffer import WriteAheadLog, batches, now_ms, read_entries
from tests.support.signals import default_sigint

pytestmark = pytest.mark.timeout(180)
ROOT = Path(__file__).resolve().parents[2]


class MarkerModel(mlflow.pyfunc.PythonModel):
    """Tiny pyfunc: predicts a constant marker per row and checks its weights artifact is there."""

    def __init__(self, marker: float):
        self.marker = marker

    def load_context(self, context: Any) -> None:
        assert Path(context.artifacts["weights"]).read_text() == "w"

    def predict(self, context, model_input, params=None):  # no hints: MLflow would validate them
        return [self.marker] * len(model_input)


@pytest.fixture(scope="session")
def empty_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An initialised (migrated) empty MLflow database, copied per test: migrating takes seconds."""
    path = tmp_path_factory.mktemp("mlflow-template") / "mlflow.db"
    MlflowClient(f"sqlite:///{path}").search_experiments()
    return path


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, empty_db: Path) -> Iterator[dict[str, Any]]:
    """A SQLite tracking store and a write-ahead buffer dir in tmp_path; Params pointing there."""
    shutil.copy(empty_db, tmp_path / "mlflow.db")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv(tracking.BUFFER_DIR_ENV, str(tmp_path / "buffer"))
    for var in ("DVC_EXP_NAME", tracking.PARENT_RUN_ENV, "PREFECT__FLOW_RUN_ID", "PREFECT_FLOW_RUN_ID"):
        monkeypatch.delenv(var, raising=False)
    params = parse_params({"tracking": {"artifact_root": str(tmp_path / "artifacts")}})
    tracking.configure(params)
    yield {"uri": uri, "params": params, "client": MlflowClient(uri), "buffer": tmp_path / "buffer"}


def _weights(tmp_path: Path) -> Path:
    p = tmp_path / "model.safetensors"
    p.write_text("w")
    return p


def _child(tmp_path: Path, store: dict[str, Any], body: str) -> subprocess.Popen[str]:
    """A child process that opens a stage run, prints READY <run_id>, then runs ``body``."""
    script = tmp_path / "child.py"
    script.write_text(
        textwrap.dedent(
            """
            import sys, time
            from avf.config import parse_params
            from avf import tracking
            params = parse_params({"tracking": {"artifact_root": sys.argv[1]}})
            with tracking.stage_run(params, stage="pretrain") as run:
                run.log_metrics({"train/loss": 1.0}, step=0)
                print("READY", run.run_id, flush=True)
            """
        ).rstrip()
        + "\n"
        + textwrap.indent(textwrap.dedent(body), " " * 4)
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, str(script), str(tmp_path / "artifacts")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=tmp_path,
        preexec_fn=default_sigint,
    )


def _wait_ready(proc: subprocess.Popen[str], timeout: float = 120) -> str:
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if line.startswith("READY"):
            return line.split()[1]
        if not line and proc.poll() is not None:
            break
    proc.kill()
    raise AssertionError(f"child never got ready: {proc.stderr.read() if proc.stderr else ''}")


# ---------------------------------------------------------------------------------------------
def test_configure_env_wins_and_sqlite_paths_are_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    params = parse_params({"tracking": {"uri": "sqlite:///rel/m.db"}})
    assert tracking.configure(params) == f"sqlite:///{tmp_path / 'rel' / 'm.db'}"
    assert tracking.current_uri() == f"sqlite:///{tmp_path / 'rel' / 'm.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5999")
    assert tracking.configure(params) == "http://127.0.0.1:5999"
    assert mlflow.get_tracking_uri() == "http://127.0.0.1:5999"
    assert os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"]  # short retries for a remote server


def test_stage_run_records_params_tags_metrics_artifacts_and_datasets(
    store: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    client: MlflowClient = store["client"]
    params: Params = store["params"]
    parent = client.create_run(client.create_experiment("parent")).info.run_id
    monkeypatch.setenv("DVC_EXP_NAME", "abl-no-lg")
    monkeypatch.setenv(tracking.PARENT_RUN_ENV, parent)
    monkeypatch.setenv("PREFECT__FLOW_RUN_ID", "flow-run-1")
    sections = ("model", "finetune", "ray")
    artifact = tmp_path / "notes.txt"
    artifact.write_text("hello")
    png = tmp_path / "given.png"
    fig = plt.figure()
    plt.plot([0, 1], [1, 0])
    fig.savefig(png)

    with tracking.stage_run(params, stage="finetune", sections=sections, dataset="ravdess") as run:
        for step in range(5):
            run.log_metrics({"train/loss": 1.0 / (step + 1), "train/lr": 1e-3 * step}, step=step)
        run.log_params({"extra.flag": True})
        run.set_tags({"note": "x"})
        run.log_artifact(artifact)
        run.log_artifact(artifact, artifact_path="docs")
        run.log_dict({"a": 1}, "resolved_params.json")
        run.log_figure(fig, "plots/confusion.png")
        run.log_figure(png, "plots/given.png")
        run.log_dataset("ravdess", tmp_path / "shards", "0123456789abcdef0123456789abcdef")
        assert run.pending == 0 and run.online
    plt.close(fig)
    tracking.write_run_file(tmp_path / "reports" / "mlflow_run.json", run)

    r = client.get_run(run.run_id)
    assert r.info.status == "FINISHED" and r.info.end_time is not None
    assert r.info.run_name == "finetune-abl-no-lg"
    assert client.get_experiment(r.info.experiment_id).name == "avf-mae-pp/finetune-ravdess"
    expected = tracking.flatten_params(params, sections)
    assert {k: r.data.params[k] for k in expected} == expected
    assert r.data.params["seed"] == "0" and r.data.params["model.size"] == "tiny"
    assert r.data.params["extra.flag"] == "true"
    tags = r.data.tags
    assert tags["avf.stage"] == "finetune" and tags["avf.dataset"] == "ravdess"
    assert tags["avf.ablation"] == "baseline" and tags["avf.variant"] == "avf_mae_pp_tiny"
    assert tags["avf.params_hash"] == section_hash(params, *sections)
    assert tags["dvc.exp_name"] == "abl-no-lg" and tags["prefect.flow_run_id"] == "flow-run-1"
    assert tags["mlflow.parentRunId"] == parent and tags["ray.num_workers"] == "1"
    head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=ROOT).stdout.strip()
    if head and Path.cwd().resolve() == ROOT:
        assert tags["mlflow.source.git.commit"] == head
    assert tags["note"] == "x"
    history = client.get_metric_history(run.run_id, "train/loss")
    assert [(m.step, m.value) for m in history] == [(s, 1.0 / (s + 1)) for s in range(5)]
    assert {a.path for a in client.list_artifacts(run.run_id)} >= {"notes.txt", "docs", "resolved_params.json", "plots"}
    assert {a.path for a in client.list_artifacts(run.run_id, "plots")} == {"plots/confusion.png", "plots/given.png"}
    local = Path(mlflow.artifacts.download_artifacts(run_id=run.run_id, artifact_path="resolved_params.json"))
    assert json.loads(local.read_text()) == {"a": 1}
    (ds,) = r.inputs.dataset_inputs
    assert ds.dataset.name == "ravdess" and ds.dataset.digest == "0123456789abcdef0123456789abcdef"
    assert str(tmp_path / "shards") in ds.dataset.source
    assert json.loads((tmp_path / "reports" / "mlflow_run.json").read_text()) == {
        "run_id": run.run_id,
        "experiment_id": r.info.experiment_id,
        "tracking_uri": store["uri"],
        "experiment_name": "avf-mae-pp/finetune-ravdess",
        "run_name": "finetune-abl-no-lg",
    }
    assert not list(store["buffer"].glob("*")), "the buffer of a fully sent run is removed"


def test_exception_marks_run_failed(store: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="boom"), tracking.stage_run(store["params"], stage="pretrain") as run:
        run.log_metrics({"train/loss": 1.0}, step=1)
        raise ValueError("boom")
    r = store["client"].get_run(run.run_id)
    assert r.info.status == "FAILED"
    assert r.data.tags["avf.error"] == "ValueError: boom"
    assert r.data.metrics["train/loss"] == 1.0


def test_keyboard_interrupt_and_in_process_sigterm_mark_run_killed(store: dict[str, Any]) -> None:
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(KeyboardInterrupt), tracking.stage_run(store["params"], stage="pretrain") as run1:
        raise KeyboardInterrupt
    with pytest.raises(StageTerminated) as info, tracking.stage_run(store["params"], "pretrain") as run2:
        assert signal.getsignal(signal.SIGTERM) is not before
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # the handler raises before this ends
    assert info.value.code == 128 + signal.SIGTERM
    assert signal.getsignal(signal.SIGTERM) is before, "the previous SIGTERM handler is restored"
    for run in (run1, run2):
        assert store["client"].get_run(run.run_id).info.status == "KILLED"


def test_clean_exit_inside_the_block_finishes_the_run(store: dict[str, Any]) -> None:
    with pytest.raises(SystemExit), tracking.stage_run(store["params"], stage="pretrain") as run:
        sys.exit(0)
    assert store["client"].get_run(run.run_id).info.status == "FINISHED"


@pytest.mark.parametrize(("sig", "status"), [(signal.SIGTERM, "KILLED"), (signal.SIGINT, "KILLED")])
def test_signal_to_a_child_never_leaves_the_run_running(
    store: dict[str, Any], tmp_path: Path, sig: int, status: str
) -> None:
    proc = _child(
        tmp_path,
        store,
        "for i in range(600):\n    run.log_metrics({'train/loss': 0.5}, step=i + 1)\n    time.sleep(0.1)\n",
    )
    try:
        run_id = _wait_ready(proc)
        time.sleep(0.5)
        proc.send_signal(sig)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    if sig == signal.SIGTERM:
        assert proc.returncode == 128 + signal.SIGTERM, proc.stderr.read() if proc.stderr else ""
    else:
        assert proc.returncode != 0
    run = store["client"].get_run(run_id)
    assert run.info.status == status and run.info.end_time is not None
    steps = [m.step for m in store["client"].get_metric_history(run_id, "train/loss")]
    assert steps[0] == 0 and steps == list(range(len(steps))) and len(steps) >= 2
    assert not list(store["buffer"].glob("*.jsonl"))


def test_sigkilled_run_is_finished_from_its_buffer(store: dict[str, Any], tmp_path: Path) -> None:
    proc = _child(
        tmp_path,
        store,
        "run.log_metrics({'train/loss': 0.25}, step=1)\nprint('READY', run.run_id, flush=True)\ntime.sleep(600)\n",
    )
    try:
        _wait_ready(proc)
        run_id = _wait_ready(proc)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert store["client"].get_run(run_id).info.status == "RUNNING"
    (log,) = store["buffer"].glob(f"{run_id}.*.jsonl")
    reports = tracking.flush_buffers(store["buffer"])
    assert [(r.run_id, r.state, r.end_status) for r in reports] == [(run_id, "flushed", "KILLED")]
    run = store["client"].get_run(run_id)
    assert run.info.status == "KILLED" and run.data.tags["avf.end_reason"].startswith("writer died")
    assert [m.step for m in store["client"].get_metric_history(run_id, "train/loss")] == [0, 1]
    assert not log.exists()


def test_resumed_run_logs_without_owning_the_status(store: dict[str, Any]) -> None:
    params: Params = store["params"]
    client: MlflowClient = store["client"]
    with tracking.stage_run(params, stage="pretrain") as run:
        with tracking.stage_run(params, stage="pretrain", **run.handle()) as worker:
            assert worker.run_id == run.run_id and not worker.owner
            worker.log_metrics({"train/loss": 0.5}, step=3)
        assert client.get_run(run.run_id).info.status == "RUNNING"
        attached = tracking.attach(run.run_id, run.tracking_uri)
        attached.log_metrics({"train/loss": 0.4}, step=4)
        attached.close()
        # a worker that died with data still buffered: the owner replays it before ending the run
        dead = WriteAheadLog.create(run.buffer_dir, run.run_id, run.tracking_uri, owner=False)
        dead.append("metrics", ts=now_ms(), step=5, data={"train/loss": 0.3})
        dead.close(remove=False)
    r = client.get_run(run.run_id)
    assert r.info.status == "FINISHED"
    assert [m.step for m in client.get_metric_history(run.run_id, "train/loss")] == [3, 4, 5]
    assert not list(store["buffer"].glob("*"))


def test_null_run_does_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'never.db'}")
    with tracking.null_run() as run:
        run.log_metrics({"train/loss": 1.0}, step=1)
        run.log_params({"a": 1})
        run.set_tags({"b": 2})
        run.log_artifact(tmp_path / "missing.txt")
        run.log_dict({}, "x.json")
        run.log_figure(object(), "x.png")
        run.log_dataset("d", "p", "digest")
        assert run.log_model(MarkerModel(1.0)) is None
        assert run.flush() and run.run_id is None
    tracking.write_run_file(tmp_path / "run.json", run)
    assert json.loads((tmp_path / "run.json").read_text())["run_id"] is None
    assert not (tmp_path / "never.db").exists()


def test_stage_run_and_null_run_share_the_run_protocol(store: dict[str, Any]) -> None:
    members = [n for n in vars(tracking.Run) if not n.startswith("_") or n in ("__enter__", "__exit__")]
    assert {"log_metrics", "log_model", "run_id", "pending"} <= set(members)

    def shape(fn: Any) -> list[tuple[str, Any, Any]]:
        return [(p.name, p.kind, p.default) for p in inspect.signature(fn).parameters.values()]

    with tracking.stage_run(store["params"], stage="pretrain", sections=()) as live:
        for run in (live, tracking.null_run()):
            for name in members:
                assert hasattr(run, name), (type(run).__name__, name)
                if not isinstance(vars(tracking.Run)[name], property):
                    assert shape(getattr(type(run), name)) == shape(getattr(tracking.Run, name)), name


def test_importing_tracking_loads_neither_mlflow_nor_the_pyfunc() -> None:
    code = (
        "import sys, avf.tracking\n"
        "loaded = [m for m in sys.modules if m.split('.')[0] == 'mlflow' or m.startswith(('avf.predict', "
        "'avf.tracking.pyfunc'))]\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})


def test_the_served_model_pickles_its_loader_by_reference() -> None:
    """MLflow stores the pyfunc with cloudpickle: the loader must travel as a reference into the installed
    avf (and its settings as data), and the tracking package must not import what it serves."""
    import functools

    import cloudpickle

    from avf.predict.serving import load_video_model, video_paths
    from avf.tracking.pyfunc import ServedModel

    blob = cloudpickle.dumps(ServedModel(functools.partial(load_video_model, settings={"window_s": 2.0})))
    assert b"avf.tracking.pyfunc" in blob and b"avf.predict.serving" in blob and b"def predict" not in blob
    model = cloudpickle.loads(blob)
    assert type(model) is ServedModel and model.load.func is load_video_model
    assert model.load.keywords == {"settings": {"window_s": 2.0}}
    with pytest.raises(RuntimeError, match="not loaded"):
        model.predict(None, ["a.mp4"])
    assert video_paths("a.mp4") == ["a.mp4"] and video_paths({"video": ["a", "b"]}) == ["a", "b"]
    with pytest.raises(ValueError, match="'video' column"):
        video_paths(pd.DataFrame({"path": ["a.mp4"]}))


def test_outage_is_buffered_and_replayed_in_order(store: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(tracking.RETRY_ENV, "0")
    client: MlflowClient = store["client"]
    with tracking.stage_run(store["params"], stage="pretrain") as run:
        real = run._client.log_batch
        down = {"on": False}

        def flaky(*a: Any, **k: Any) -> None:
            if down["on"]:
                raise MlflowException("API request failed: connection refused")  # INTERNAL_ERROR
            real(*a, **k)

        monkeypatch.setattr(run._client, "log_batch", flaky)
        run.log_metrics({"train/loss": 0.0}, step=0)
        down["on"] = True
        for step in range(1, 6):
            run.log_metrics({"train/loss": float(step)}, step=step)  # no exception while "down"
        run.log_params({"late": 1})
        assert not run.online and run.pending == 6
        log_path = run.buffer_path
        assert [e["kind"] for e in read_entries(log_path)[1:]][-6:] == ["metrics"] * 5 + ["params"]
        down["on"] = False
        run.log_metrics({"train/loss": 6.0}, step=6)
        assert run.online and run.pending == 0
    assert [m.step for m in client.get_metric_history(run.run_id, "train/loss")] == list(range(7))
    assert client.get_run(run.run_id).data.params["late"] == "1"
    assert not log_path.exists()


def test_rejected_entries_raise_once_and_do_not_block_the_buffer(store: dict[str, Any]) -> None:
    with tracking.stage_run(store["params"], stage="pretrain") as run:
        run.log_params({"p": 1})
        with pytest.raises(MlflowException, match="Changing param values"):
            run.log_params({"p": 2})
        run.log_metrics({"train/loss": 1.0}, step=1)
        assert run.pending == 0
        with pytest.raises(MlflowException):
            run.log_metrics({"bad key!": 1.0})  # invalid names fail before reaching the buffer
    r = store["client"].get_run(run.run_id)
    assert r.info.status == "FINISHED" and r.data.params["p"] == "1" and r.data.metrics["train/loss"] == 1.0


def test_large_calls_are_split_into_batches(store: dict[str, Any]) -> None:
    with tracking.stage_run(store["params"], stage="pretrain", sections=()) as run:
        run.log_params({f"p{i}": i for i in range(250)})
        run.log_metrics({f"m{i}": i for i in range(1500)}, step=2)
    r = store["client"].get_run(run.run_id)
    assert len(r.data.params) == 251 and len(r.data.metrics) == 1500


def test_batches_respect_mlflow_limits() -> None:
    def e(kind: str, n: int, seq: int) -> dict[str, Any]:
        return {"seq": seq, "kind": kind, "data": {f"k{i}": 1 for i in range(n)}}

    entries = [e("metrics", 600, 1), e("metrics", 600, 2), e("params", 60, 3), e("params", 60, 4)]
    entries += [{"seq": 5, "kind": "artifact"}, e("tags", 1, 6)]
    groups = [[x["seq"] for x in g] for g in batches(entries)]
    assert groups == [[1], [2, 3], [4], [5], [6]]


def test_torn_last_line_and_live_logs(tmp_path: Path) -> None:
    wal = WriteAheadLog.create(tmp_path, "r1", "sqlite:///x.db", owner=True)
    wal.append("metrics", ts=1, step=0, data={"a": 1.0})
    with wal.path.open("a") as f:
        f.write('{"seq": 2, "kind": "metr')  # a crash mid-write
    assert [e["seq"] for e in read_entries(wal.path)] == [0, 1]
    assert [r.state for r in tracking.flush_buffers(tmp_path)] == ["live"]
    wal.close(remove=False)
    reopened = WriteAheadLog.open_existing(wal.path)
    assert reopened is not None and [e["seq"] for e in reopened.pending] == [1]
    reopened.close(remove=True)


def test_opening_a_run_fails_fast_when_the_server_is_down(
    store: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{services.free_port()}")
    t0 = time.monotonic()
    with (
        pytest.raises(tracking.TrackingUnavailableError, match="unreachable"),
        tracking.stage_run(store["params"], stage="pretrain"),
    ):
        pass
    assert time.monotonic() - t0 < 10


def test_system_metrics_are_sampled(store: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL", "0.2")
    with tracking.stage_run(store["params"], stage="pretrain", sections=(), system_metrics=True) as run:
        time.sleep(1.5)
    metrics = store["client"].get_run(run.run_id).data.metrics
    assert any(k.startswith("system/cpu_utilization") for k in metrics), metrics


# ---------------------------------------------------------------------------------------------
# registry
# ---------------------------------------------------------------------------------------------
def _model_run(store: dict[str, Any], tmp_path: Path, marker: float, uar: float | None) -> tracking.StageRun:
    with tracking.stage_run(store["params"], stage="finetune", sections=(), dataset="ravdess") as run:
        if uar is not None:
            run.log_metrics({"test/uar": uar}, step=1)
        uri = run.log_model(MarkerModel(marker), artifacts={"weights": _weights(tmp_path)}, pip_requirements=["mlflow"])
    assert uri.startswith("models:/") and run.model_uri == uri
    return run


def test_register_alias_and_promote(store: dict[str, Any], tmp_path: Path) -> None:
    name = "avf-test"
    assert tracking.get_alias_version(name, "champion") is None  # no such model
    uri_a, uri_b, uri_c = (
        str(_model_run(store, tmp_path, marker, uar).model_uri) for marker, uar in ((1.0, 0.6), (2.0, 0.5), (3.0, None))
    )

    v1 = tracking.register(uri_a, name, {"dvc.exp_name": "a"}, alias="candidate")
    assert v1 == 1 and isinstance(v1, int)
    tags1 = store["client"].get_model_version(name, "1").tags
    assert tags1["dvc.exp_name"] == "a"
    if Path.cwd().resolve() == ROOT:
        assert len(tags1["avf.git_commit"]) == 40
    assert tracking.get_alias_version(name, "nope") is None
    d = tracking.promote(name, actor="tester")
    assert d.promoted and d.champion_version is None and d.candidate_value == pytest.approx(0.6)
    assert "no @champion" in d.reason
    assert tracking.get_alias_version(name, "champion") == 1
    again = tracking.promote(name)
    assert not again.promoted and "already @champion" in again.reason

    v2 = tracking.register(uri_b, name, alias="candidate")
    d = tracking.promote(name, metric="test/uar", mode="max", actor="tester")
    assert not d.promoted and "does not beat" in d.reason
    assert (d.candidate_version, d.champion_version) == (2, 1)
    assert tracking.get_alias_version(name, "champion") == 1
    tags2 = store["client"].get_model_version(name, str(v2)).tags
    assert tags2["avf.promotion.decision"] == "rejected" and tags2["avf.promotion.by"] == "tester"
    assert tracking.promote(name, mode="min").promoted  # lower is better: 0.5 beats 0.6
    tracking.set_alias(name, "champion", 1)

    v3 = tracking.register(uri_c, name, {"test/uar": "0.9"}, alias="candidate")  # metric from a version tag
    d = tracking.promote(name, actor="tester", note="eval on fold 1")
    assert d.promoted and d.candidate_value == pytest.approx(0.9) and d.champion_value == pytest.approx(0.6)
    assert tracking.get_alias_version(name, "champion") == v3 == 3
    tags3 = store["client"].get_model_version(name, "3").tags
    assert tags3["avf.promotion.decision"] == "promoted" and "eval on fold 1" in tags3["avf.promotion.reason"]
    assert tags3["avf.promotion.previous_champion"] == "1"
    assert store["client"].get_model_version(name, "1").tags["avf.replaced_by"] == "3"

    champion = mlflow.pyfunc.load_model(f"models:/{name}@champion")
    assert list(champion.predict([0.0, 0.0])) == [3.0, 3.0]
    rows = tracking.list_versions(name)
    assert [r["version"] for r in rows] == [3, 2, 1]
    assert "champion" in rows[0]["aliases"] and "candidate" in rows[0]["aliases"]


def test_candidate_without_metric_is_not_promoted(store: dict[str, Any], tmp_path: Path) -> None:
    run = _model_run(store, tmp_path, 1.0, None)
    tracking.register(str(run.model_uri), "avf-nometric", alias="candidate")
    d = tracking.promote("avf-nometric")
    assert not d.promoted and "has no test/uar" in d.reason
    assert tracking.get_alias_version("avf-nometric", "champion") is None
    assert not tracking.promote("avf-no-candidate-model").promoted


# ---------------------------------------------------------------------------------------------
# CLI and services
# ---------------------------------------------------------------------------------------------
def _cli(args: list[str]) -> Any:
    from avf.cli import app

    return CliRunner().invoke(app, args, catch_exceptions=False)


def test_registry_cli(store: dict[str, Any], tmp_path: Path) -> None:
    params_file = tmp_path / "params.yaml"
    params_file.write_text(
        yaml.safe_dump({"tracking": {"artifact_root": str(tmp_path / "artifacts"), "registered_model": "avf-cli"}})
    )
    with tracking.stage_run(store["params"], stage="finetune", sections=()) as no_model:
        pass
    tracking.write_run_file(tmp_path / "nomodel.json", no_model)
    run = _model_run(store, tmp_path, 5.0, None)
    run_file = tmp_path / "mlflow_run.json"
    tracking.write_run_file(run_file, run)
    assert json.loads(run_file.read_text())["model_uri"] == run.model_uri
    metrics = tmp_path / "metrics.json"
    metrics.write_text(json.dumps({"test/uar": 0.7, "test": {"war": 0.8}, "dataset": "ravdess"}))
    p = ["--params", str(params_file), "registry"]

    res = _cli([*p, "register", "--from-run-file", str(tmp_path / "nomodel.json")])
    assert res.exit_code == 3 and "no model_uri" in res.output
    res = _cli([*p, "register", "--from-run-file", str(run_file), "--metrics", str(metrics), "--tag", "k=v"])
    assert res.exit_code == 0, res.output
    assert "registered avf-cli version 1 as @candidate" in res.output
    tags = store["client"].get_model_version("avf-cli", "1").tags
    assert tags["test/uar"] == "0.7" and tags["test/war"] == "0.8" and tags["k"] == "v"
    assert tags["avf.source_run_id"] == run.run_id

    res = _cli([*p, "promote", "--out", str(tmp_path / "decision.json")])
    assert res.exit_code == 0 and "promoted v1 to @champion" in res.output
    assert json.loads((tmp_path / "decision.json").read_text())["promoted"] is True
    res = _cli([*p, "promote", "--require"])
    assert res.exit_code == 1 and "not promoted" in res.output and "already @champion" in res.output
    res = _cli([*p, "promote"])
    assert res.exit_code == 0 and "not promoted" in res.output

    res = _cli([*p, "list", "--json"])
    assert res.exit_code == 0
    (row,) = json.loads(res.output)
    assert row["name"] == "avf-cli" and row["aliases"] == ["candidate", "champion"] and row["test/uar"] == 0.7
    res = _cli([*p, "set-alias", "avf-cli", "baseline", "1"])
    assert res.exit_code == 0 and tracking.get_alias_version("avf-cli", "baseline") == 1
    res = _cli([*p, "flush-buffer"])
    assert res.exit_code == 0 and "no buffered tracking data" in res.output


def test_servers_bind_loopback_unless_exposed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for key in (services.SECRET_KEY_ENV, services.ADMIN_PASSWORD_ENV, services.AUTH_CONFIG_ENV):
        monkeypatch.delenv(key, raising=False)
    srv = services.MlflowServer("sqlite:///x.db", str(tmp_path), port=5123)
    cmd = srv.command()
    assert cmd[cmd.index("--host") + 1] == "127.0.0.1" and cmd[cmd.index("--workers") + 1] == "1"
    assert srv.env()["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] == "false"
    with pytest.raises(services.ServiceError, match="--expose"):
        services.MlflowServer("sqlite:///x.db", str(tmp_path), host="0.0.0.0").command()
    exposed = services.MlflowServer("sqlite:///x.db", str(tmp_path), host="0.0.0.0", expose=True, basic_auth=True)
    exposed.auth_config = services.write_auth_config(tmp_path / "auth.ini")
    with pytest.raises(services.ServiceError, match=r"MLFLOW_FLASK_SERVER_SECRET_KEY.*MLFLOW_AUTH_ADMIN_PASSWORD"):
        exposed.command()
    exposed.secret_key = "k" * 32
    exposed.auth_config = services.write_auth_config(tmp_path / "auth.ini", admin_password="admin-pass-%-1")
    assert "--app-name" in exposed.command() and "basic-auth" in exposed.command()
    assert exposed.env()["MLFLOW_AUTH_CONFIG_PATH"] == str(tmp_path / "auth.ini") and "k" * 32 not in repr(exposed)
    assert services.main(["mlflow", "status", "--host", "0.0.0.0", "--state-dir", str(tmp_path)]) == 2
    assert services.main(["mlflow", "stop", "--state-dir", str(tmp_path)]) == 0


def test_a_data_stage_gets_a_run_with_its_counts_and_failures(store: dict[str, Any], tmp_path: Path) -> None:
    from avf.config import parse_params
    from avf.data.report import StageReport
    from avf.data.stages.record import track_report

    report = StageReport("faces", "ravdess", processed=5)
    report.fail("Actor_01/bad.mp4", "01-bad", "cannot open: corrupt")
    where = report.write(tmp_path / "reports", 0.5)
    assert track_report(store["params"], report, where) is None  # off by default (tests, library use)

    raw = yaml.safe_load((Path(__file__).resolve().parents[2] / "params.yaml").read_text())
    raw["tracking"] = {"artifact_root": str(tmp_path / "artifacts"), "log_data_stages": True}
    params = parse_params(raw)
    run_id = track_report(params, report, where)
    run = store["client"].get_run(run_id)
    assert run.info.status == "FINISHED" and run.info.run_name == "faces-ravdess"
    assert run.data.metrics["processed"] == 5 and run.data.metrics["failed"] == 1
    assert run.data.tags["avf.stage"] == "faces" and "data.face.detect_every" in run.data.params
    assert run.data.params["data.datasets.ravdess.adapter"] == "ravdess"  # the sections dvc.yaml lists
    exp = store["client"].get_experiment(run.info.experiment_id)
    assert exp.name == "avf-mae-pp/data"
    arts = {a.path for a in store["client"].list_artifacts(run_id, "report")}
    assert arts == {"report/summary.json", "report/failures.csv"}
