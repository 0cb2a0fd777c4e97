"""A tiny real project for tests that run ``avf`` stages as subprocesses: generated RAVDESS-style clips taken
through the DVC stages' own commands (faces, audio, manifest, shards), in-process training, SQLite tracking.

    root = prepare(tmp_path / "proj", PARAMS)          # ~30 s: synth -> ... -> data/shards/ravdess
    avf(root, *PRETRAIN, "--out", "models/pretrain", "--reports", "reports/pretrain")
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from avf.utils.terminal import LOG_DIR_ENV

AVF = str(Path(sys.executable).with_name("avf"))
ROOT = Path(__file__).resolve().parents[2]

PARAMS: dict[str, Any] = {
    "seed": 0,
    "data": {
        "synth": {
            "ravdess_actors": 3,
            "emotions": [1, 3],
            "cremad_actors": 0,
            "duration_s": 2.0,
            "frame_size": 128,
        },
        "datasets": {"ravdess": {"adapter": "ravdess", "raw_dir": "data/raw/ravdess", "roles": ["pretrain", "target"]}},
        "target": "ravdess",
        "face": {
            "detector_model": str(ROOT / "models/assets/face_detection_short_range.tflite"),
            "landmark_model": str(ROOT / "models/assets/face_landmark.tflite"),
        },
        "workers": 1,
        "shards": {"max_shard_count": 2},
        "augment": {"rand_augment": ""},
    },
    # one optimizer step per epoch: three epochs, a checkpoint after each
    "pretrain": {"epochs": 3, "batch_size": 2, "steps_per_epoch": 1, "log_every": 1},
    "ray": {"num_workers": 0},
}
PRETRAIN = ["train", "pretrain", "--shards", "data/shards"]


def env(project: Path, store: str = "mlruns") -> dict[str, str]:
    """The stage environment: the venv's tools first, the project's own SQLite store ``<store>.db`` and buffer,
    the stage logs in the project's ``runs/logs/``."""
    return {
        **os.environ,
        "PATH": f"{Path(AVF).parent}:{os.environ['PATH']}",
        "MLFLOW_TRACKING_URI": f"sqlite:///{project}/{store}.db",
        "AVF_MLFLOW_BUFFER_DIR": str(project / "runs" / f"{store}-buffer"),
        LOG_DIR_ENV: str(project / "runs" / "logs"),
    }


def avf(project: Path, *args: str, params: str = "params.yaml", environ: dict[str, str] | None = None) -> str:
    """``avf -p params args...`` in ``project``, which must succeed; its stderr."""
    proc = subprocess.run(
        [AVF, "-p", params, *args],
        cwd=project,
        env=environ or env(project),
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, f"avf {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr[-4000:]}"
    return proc.stderr


def prepare(root: Path, params: dict[str, Any]) -> Path:
    """Write ``params`` to ``root/params.yaml`` and build ``data/shards/ravdess`` with the real data stages."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    avf(root, "data", "synth", "--out", "data/raw")
    d, rep = "ravdess", ["--reports", "reports/data"]
    faces, audio, manifest = f"data/interim/faces/{d}", f"data/interim/audio/{d}", f"data/manifest/{d}.parquet"
    avf(root, "data", "faces", "--dataset", d, "--out", faces, *rep)
    avf(root, "data", "audio", "--dataset", d, "--faces", faces, "--out", audio, *rep)
    avf(root, "data", "manifest", "--dataset", d, "--faces", faces, "--audio", audio, "--out", manifest, *rep)
    avf(root, "data", "shards", "--dataset", d, "--manifest", manifest, "--out", f"data/shards/{d}", *rep)
    return root
