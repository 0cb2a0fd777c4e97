"""Your own data, end to end through the `avf` CLI: a CSV of generated talking-face clips (adapter ``csv``)
-> faces -> audio -> manifest -> shards, an official-format checkpoint imported with `avf model
import-official`, fine-tuning from it and evaluation; classification, then a shorter regression run."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import pytest
import torch
import yaml

from avf.data.manifest import label_space, read_manifest
from avf.models import create_model, to_official_state_dict
from tests.support import media
from tests.support.cli import avf_ok, data_stages, own_tracking_store

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

ROOT = Path(__file__).resolve().parents[2]
SUBJECTS = ("p1", "p2", "p3", "p4")
TONES = {"happy": (880.0, 1320.0), "sad": (220.0, 330.0)}


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Raw clips (8 videos of 4 people, a frame folder with its wav), an official-format checkpoint, and an
    MLflow store of its own."""
    d = tmp_path_factory.mktemp("own-data")
    raw = d / "raw"
    for i, subject in enumerate(SUBJECTS):
        for label, tones in TONES.items():
            face = media.FACES[(i + (label == "sad")) % 2]
            media.write_clip(raw / subject / f"{label}.mp4", seconds=1.2, size=(160, 160), face=face, tones=tones)
    frames = raw / "p5" / "take 1"  # a folder of frame images and a separate wav
    frames.mkdir(parents=True)
    for k, rgb in enumerate(media.face_frames(30, size=(160, 160), face="grace_hopper"), start=1):
        cv2.imwrite(str(frames / f"{k}.jpg"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    media.write_wav(raw / "p5" / "take1.wav", media.tone_schedule((300.0,), 1.2, 16000), 16000)
    # what XuecWu/AVF-MAE's pretraining saves: {"model": state dict in the official names}
    official = to_official_state_dict(create_model("avf_mae_pp_pretrain_tiny").state_dict())
    torch.save({"model": official, "epoch": 99}, d / "checkpoint-99.pth")
    with own_tracking_store(d):
        yield d


def _params(ws: Path, name: str, options: dict[str, Any], finetune: dict[str, Any]) -> Path:
    params = {
        "data": {
            "datasets": {name: {"adapter": "csv", "raw_dir": str(ws / "raw"), "roles": ["target"], "options": options}},
            "target": name,
            "face": {
                "detector_model": str(ROOT / "models/assets/face_detection_short_range.tflite"),
                "landmark_model": str(ROOT / "models/assets/face_landmark.tflite"),
            },
            "split": {"fold": 1, "val_subjects": 1},
            "shards": {"max_shard_count": 4},
            "augment": {"rand_augment": ""},
            "workers": 1,
            "max_fail_frac": 0.5,
        },
        "model": {"size": "tiny"},
        "finetune": {
            "epochs": 1,
            "batch_size": 2,
            "base_lr": 0.05,
            "log_every": 1,
            "init_from": "pretrain",
            **finetune,
        },
        "ray": {"num_workers": 0, "storage_path": str(ws / "ray")},
        "tracking": {"artifact_root": str(ws / "mlartifacts")},
    }
    path = ws / f"params-{name}.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path


def _pipeline(ws: Path, name: str, params: Path) -> dict[str, Path]:
    """The documented commands (README "Your own data"), with every path under ``ws``."""
    p = ["--params", str(params)]
    out = {k: ws / name / k for k in ("faces", "audio", "manifest", "shards", "reports", "model", "eval")}
    manifest = out["manifest"] / f"{name}.parquet"
    data_stages(
        params,
        name,
        faces=out["faces"],
        audio=out["audio"],
        manifest=manifest,
        shards=out["shards"] / name,
        reports=out["reports"],
    )
    imported = ws / "official" / "model.safetensors"
    if not imported.exists():
        avf_ok("model", "import-official", str(ws / "checkpoint-99.pth"), str(imported))
    avf_ok(
        *p, "train", "finetune", "--manifests", str(out["manifest"]), "--shards", str(out["shards"]),
        "--pretrain", str(imported.parent), "--intermediate", str(ws / "no-stage-2"),
        "--out", str(out["model"]), "--reports", str(out["reports"] / "finetune"), "--storage", str(ws / "ray"),
    )  # fmt: skip
    avf_ok(
        *p, "eval", "run", "--model", str(out["model"]), "--manifests", str(out["manifest"]),
        "--shards", str(out["shards"]), "--out", str(out["eval"]),
    )  # fmt: skip
    return out


def test_classification_from_a_csv_through_import_official_finetune_and_eval(ws: Path) -> None:
    rows = [f"{s}/{label}.mp4,{label},{s}" for s in SUBJECTS for label in TONES]
    (ws / "raw" / "clips.csv").write_text("path,label,subject\n" + "\n".join([*rows, "p9/gone.mp4,sad,p9"]) + "\n")
    params = _params(ws, "mine", {"file": "clips.csv", "folds": 2}, {})
    out = _pipeline(ws, "mine", params)

    manifest_path = out["manifest"] / "mine.parquet"
    df = read_manifest(manifest_path)
    labels = label_space(df, manifest_path)
    assert (labels.task, labels.classes) == ("classification", ("happy", "sad"))
    assert len(df) == 8 and (df["status"] == "ok").all(), df[["clip_id", "status"]]
    assert set(df["clip_id"]) == {f"{s}-{label}" for s in SUBJECTS for label in TONES}
    assert df.groupby("subject")["test_fold"].nunique().eq(1).all() and set(df["test_fold"]) == {1, 2}
    with open(out["reports"] / "faces" / "mine" / "failures.csv") as fh:
        failures = list(csv.DictReader(fh))
    assert [f["file"].endswith("clips.csv:10") and "video not found" in f["reason"] for f in failures] == [True]

    card = json.loads((out["model"] / "card.json").read_text())
    assert card["init_from"] == str(ws / "official" / "model.safetensors")
    assert card["datasets"]["mine"]["classes"] == ["happy", "sad"] and card["datasets"]["mine"]["test"] == 4
    metrics = json.loads((out["eval"] / "metrics.json").read_text())
    assert metrics["dataset"] == "mine" and metrics["clips"] == 4 and 0 <= metrics["test/uar"] <= 100
    with open(out["eval"] / "per_class.csv") as fh:
        assert [r["class"] for r in csv.DictReader(fh)] == ["happy", "sad"]


def test_regression_with_a_split_column_and_a_frame_folder(ws: Path) -> None:
    (ws / "raw" / "va.csv").write_text(
        "path,subject,arousal,valence,split,audio_path,fps\n"
        "p1/happy.mp4,p1,0.8,0.6,train,,\n"
        "p1/sad.mp4,p1,-0.4,-0.7,train,,\n"
        "p2/happy.mp4,p2,0.7,0.5,train,,\n"
        "p3/sad.mp4,p3,-0.5,-0.6,val,,\n"
        "p4/happy.mp4,p4,0.9,0.4,test,,\n"
        "p5/take 1,p5,-0.2,-0.3,test,p5/take1.wav,25\n"
    )
    options = {"file": "va.csv", "targets": "arousal,valence"}
    out = _pipeline(ws, "va", _params(ws, "va", options, {"select_metric": "ccc"}))

    manifest_path = out["manifest"] / "va.parquet"
    df = read_manifest(manifest_path).set_index("clip_id")
    labels = label_space(df, manifest_path)
    assert (labels.task, labels.targets) == ("regression", ("arousal", "valence"))
    assert (df["status"] == "ok").all() and df.loc["p5-take_1", "has_audio"]
    assert df.loc["p5-take_1", "official_split"] == "test" and list(df.loc["p5-take_1", "targets"]) == pytest.approx(
        [-0.2, -0.3]
    )
    metrics = json.loads((out["eval"] / "metrics.json").read_text())
    assert metrics["clips"] == 2 and "test/ccc" in metrics and "test/uar" not in metrics
    with open(out["eval"] / "predictions.csv") as fh:
        header = next(csv.reader(fh))
    assert header == ["key", "true_arousal", "pred_arousal", "true_valence", "pred_valence"]
