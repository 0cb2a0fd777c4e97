"""A stage's terminal shows avf's own lines only: the faces stage (real MediaPipe, in the stage process and in
its worker pool), a fine-tuning stage on a private Ray cluster and the register stage run as `avf` processes
under a pseudo-terminal and with piped output. Other programs' internals go to the stage's log file
($AVF_LOG_DIR/<stage>.log), ``-v`` brings them back to the terminal, and errors stay on the terminal."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from avf.utils.terminal import LOG_DIR_ENV
from tests.support import media
from tests.support.cli import data_stages, own_tracking_store

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

ROOT = Path(__file__).resolve().parents[2]
AVF = Path(sys.executable).with_name("avf")
MEDIAPIPE = ("Creating LiteRT", "Logging before InitGoogle", "Input tensor memory is not aligned")
RAY = ("Reporting training result", "Checkpoint successfully created")
MLFLOW = ("Downloading artifacts", "system metrics", "type hint", "input_example")
NOISE = MEDIAPIPE + RAY + MLFLOW
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def _params(ws: Path, name: str, **data: Any) -> Path:
    short = {"epochs": 1, "batch_size": 2, "base_lr": 0.01, "log_every": 1, "warmup_epochs": 0}
    params = {
        "data": {
            "datasets": {
                "emo": {
                    "adapter": "csv",
                    "raw_dir": str(ws / "raw"),
                    "roles": ["target"],
                    "options": {"file": "emo.csv", "folds": 3},
                }
            },
            "target": "emo",
            "face": {
                "detector_model": str(ROOT / "models/assets/face_detection_short_range.tflite"),
                "landmark_model": str(ROOT / "models/assets/face_landmark.tflite"),
            },
            "split": {"fold": 1, "val_subjects": 1},
            "augment": {"rand_augment": ""},
            "workers": 1,
            **data,
        },
        "model": {"size": "tiny"},
        "finetune": short,
        "ray": {"num_workers": 1, "cpus_per_worker": 1.0, "max_failures": 0, "storage_path": str(ws / "ray")},
        "tracking": {"artifact_root": str(ws / "mlartifacts"), "log_system_metrics": True, "log_data_stages": False},
    }
    path = ws / f"params-{name}.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """6 clips of 3 people (3 folds) and their manifest and shards, made in-process by the data stages."""
    d = tmp_path_factory.mktemp("quiet")
    rows = ["path,label,subject"]
    for i, subject in enumerate(("p1", "p2", "p3")):
        for label, tones in (("happy", (880.0, 1320.0)), ("sad", (220.0, 330.0))):
            face = media.FACES[(i + (label == "sad")) % 2]
            media.write_clip(d / "raw" / subject / f"{label}.mp4", seconds=1.0, size=(160, 160), face=face, tones=tones)
            rows.append(f"{subject}/{label}.mp4,{label},{subject}")
    (d / "raw" / "emo.csv").write_text("\n".join(rows) + "\n")
    with own_tracking_store(d):
        data_stages(
            _params(d, "data"),
            "emo",
            faces=d / "faces",
            audio=d / "audio",
            manifest=d / "manifests" / "emo.parquet",
            shards=d / "shards" / "emo",
            reports=d / "reports",
        )
        yield d


def _env(ws: Path) -> dict[str, str]:
    return {
        **os.environ,
        LOG_DIR_ENV: str(ws / "logs"),
        "MLFLOW_TRACKING_URI": f"sqlite:///{ws / 'mlruns.db'}",
        "AVF_MLFLOW_BUFFER_DIR": str(ws / "mlflow-buffer"),
        "COLUMNS": "120",
    }


def _in_pty(args: list[str], cwd: Path, env: dict[str, str], timeout: float = 600) -> tuple[int, str]:
    """Run ``args`` with a pseudo-terminal as stdin, stdout and stderr; its exit code and what it showed."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(args, cwd=cwd, env=env, stdin=slave, stdout=slave, stderr=slave, start_new_session=True)
    os.close(slave)
    out = bytearray()
    deadline = time.monotonic() + timeout
    try:
        while True:
            ready, _, _ = select.select([master], [], [], 0 if proc.poll() is not None else 1.0)
            if not ready:
                if proc.poll() is not None:
                    break  # exited and nothing left to read (helpers that kept the terminal may linger)
                assert time.monotonic() < deadline, f"{args[:4]} still running after {timeout} s:\n{bytes(out)!r}"
                continue
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: every process holding the terminal is gone
                break
            if not chunk:
                break
            out += chunk
        proc.wait()
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
    return proc.returncode, _screen(out.decode("utf-8", "replace"))


def _screen(raw: str) -> str:
    """Terminal output as its lines read: colour codes dropped, each line as its last carriage return left it."""
    lines = ANSI.sub("", raw).replace("\r\n", "\n").split("\n")
    return "\n".join(line.rsplit("\r", 1)[-1] for line in lines)


def _piped(args: list[str], cwd: Path, env: dict[str, str]) -> tuple[int, str]:
    proc = subprocess.run(args, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return proc.returncode, proc.stdout


def _quiet(shown: str) -> None:
    noise = [n for n in NOISE if n.lower() in shown.lower()]
    assert not noise, f"{noise} on the terminal:\n{shown[-6000:]}"


def _log(ws: Path, stage: str) -> str:
    return (ws / "logs" / f"{stage}.log").read_text()


def _faces(ws: Path, name: str, *extra: str, dataset: str = "emo", **data: Any) -> list[str]:
    params = _params(ws, name, **data)
    out = ["--out", str(ws / name / "faces"), "--reports", str(ws / name / "reports")]
    return [str(AVF), *extra, "--params", str(params), "data", "faces", "-d", dataset, *out]


def test_faces_on_a_terminal_shows_its_bar_and_table_and_logs_mediapipe(ws: Path) -> None:
    code, shown = _in_pty(_faces(ws, "pty-pool", workers=2), ws, _env(ws))
    assert code == 0, shown
    _quiet(shown)
    assert re.search(r"faces emo .*6/6", shown) and "processed" in shown and "failure share" in shown, shown
    assert "Creating LiteRT" in _log(ws, "faces-emo")  # from the worker processes


def test_faces_in_a_log_is_a_few_lines_and_logs_mediapipe(ws: Path) -> None:
    code, shown = _piped(_faces(ws, "piped"), ws, _env(ws))
    assert code == 0, shown
    _quiet(shown)
    assert "faces emo: 6 processed, 0 skipped, 0 failed (0.0%)" in shown, shown
    assert len(shown.splitlines()) <= 4, shown
    assert "Creating LiteRT" in _log(ws, "faces-emo")  # from the stage process itself (workers: 1)


def test_verbose_faces_shows_mediapipe_on_the_terminal(ws: Path) -> None:
    code, shown = _piped(_faces(ws, "verbose", "-v"), ws, _env(ws))
    assert code == 0, shown
    assert "Creating LiteRT" in shown, shown


def test_errors_stay_on_the_terminal(ws: Path) -> None:
    env = _env(ws)
    code, shown = _piped(_faces(ws, "unknown", dataset="nope"), ws, env)
    assert code == 2 and "error:" in shown and "nope" in shown, shown

    crash = (
        "import sys\n"
        "import avf.data.stages.faces as faces\n"
        "from avf.cli import main\n"
        "def boom(*args, **kwargs):\n"
        "    raise RuntimeError('boom in the stage')\n"
        "faces.run_faces = boom\n"
        f"sys.argv = {_faces(ws, 'crash')!r}\n"
        "main()\n"
    )
    code, shown = _piped([sys.executable, "-c", crash], ws, env)
    assert code == 1 and "RuntimeError: boom in the stage" in shown and "Traceback" in shown, shown
    assert "RuntimeError: boom in the stage" in _log(ws, "faces-emo")


def test_training_and_register_show_progress_and_results_only(ws: Path) -> None:
    params = _params(ws, "train")
    env = _env(ws)
    out, reports, none = ws / "finetune", ws / "reports" / "finetune", ws / "none"
    stage = ["--manifests", str(ws / "manifests"), "--shards", str(ws / "shards"), "--pretrain", str(none)]
    train = [str(AVF), "--params", str(params), "train", "finetune", *stage, "--intermediate", str(none)]
    code, shown = _in_pty([*train, "--out", str(out), "--reports", str(reports)], ws, env)
    assert code == 0, shown
    _quiet(shown)
    assert re.search(r"finetune .*1/1 .*epoch 1/1, loss", shown) and "stage finetune" in shown, shown
    log = _log(ws, "finetune")
    assert all(n in log for n in RAY) and "system metrics" in log, log[-6000:]

    run_file = reports / "mlflow_run.json"
    register = ["registry", "register", "--model-dir", str(out), "--from-run-file", str(run_file)]
    code, shown = _piped([str(AVF), "--params", str(params), *register, "--out", str(ws / "reg.json")], ws, env)
    assert code == 0 and "registered avf-mae-pp-demo version 1 as @candidate" in shown, shown
    _quiet(shown)
    assert "Created version '1'" in _log(ws, "register")

    import mlflow

    model_id = json.loads((ws / "reg.json").read_text())["model_uri"].removeprefix("models:/")
    logged = mlflow.MlflowClient(env["MLFLOW_TRACKING_URI"]).get_logged_model(model_id)
    mlmodel = yaml.safe_load((Path(logged.artifact_location.removeprefix("file://")) / "MLmodel").read_text())
    assert mlmodel["saved_input_example_info"]["type"] == "dataframe", mlmodel  # MLflow's input example
    assert json.loads(mlmodel["signature"]["inputs"]) == [{"type": "string", "name": "video", "required": True}]
