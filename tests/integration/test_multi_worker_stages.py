"""Every training stage on 2 Ray workers (gloo DDP) with the real tiny model, with the default switches
and with every ablation switch of the README's table at once: pretraining, stage 2 with two heads, and
stage 3 with a classification and a regression head, 2 optimizer steps each on shards made from
generated talking-face clips by the real data stages. A parameter without a gradient on a rank fails
DDP's second step, so two steps are what these runs need to show."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from avf.config import RayConfig
from avf.runtime import cluster
from avf.train.amp import precision_name, resolve_dtype
from tests.support import media
from tests.support.cli import avf_ok, data_stages, own_tracking_store

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]

ROOT = Path(__file__).resolve().parents[2]
SUBJECTS = ("p1", "p2", "p3", "p4", "p5", "p6")
TONES = {"happy": (880.0, 1320.0), "sad": (220.0, 330.0)}
ABLATIONS = {
    "model": {"lg_fourth_attn": False, "iavcl": False},
    "masking": {"decoder_masking": False, "region_balanced": False},
    "pretrain": {"contrastive": {"enabled": False}},
}


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in extra.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _params(ws: Path, name: str, target: str, extra: dict[str, Any]) -> Path:
    csv = {"adapter": "csv", "raw_dir": str(ws / "raw")}  # 3 subject-independent folds of 2 people
    short = {"epochs": 1, "batch_size": 4, "base_lr": 0.01, "log_every": 1, "steps_per_epoch": 2, "warmup_epochs": 0}
    params = {
        "data": {
            "datasets": {
                "emo": {
                    **csv,
                    "roles": ["pretrain", "intermediate", "target"],
                    "options": {"file": "emo.csv", "folds": 3},
                },
                "who": {**csv, "roles": ["intermediate"], "options": {"file": "who.csv", "folds": 3}},
                "va": {**csv, "roles": ["target"], "options": {"file": "va.csv", "targets": "arousal,valence"}},
            },
            "target": target,
            "face": {
                "detector_model": str(ROOT / "models/assets/face_detection_short_range.tflite"),
                "landmark_model": str(ROOT / "models/assets/face_landmark.tflite"),
            },
            "split": {"fold": 1, "val_subjects": 1},
            "shards": {"max_shard_count": 4},
            "augment": {"rand_augment": ""},
            "workers": 1,
        },
        "model": {"size": "tiny"},
        "pretrain": short,
        "intermediate": short,
        "finetune": {**{k: v for k, v in short.items() if k != "steps_per_epoch"}, "batch_size": 2},
        "ray": {"num_workers": 2, "cpus_per_worker": 1.0, "max_failures": 0, "storage_path": str(ws / "ray")},
        "tracking": {"artifact_root": str(ws / "mlartifacts")},
    }
    path = ws / f"params-{name}.yaml"
    path.write_text(yaml.safe_dump(_merge(params, extra), sort_keys=False))
    return path


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """12 clips of 6 people, three CSV datasets over them, and their shards; a 2-CPU Ray cluster."""
    d = tmp_path_factory.mktemp("multi-worker")
    raw = d / "raw"
    emo, who, va = ["path,label,subject"], ["path,label,subject"], ["path,subject,arousal,valence"]
    for i, subject in enumerate(SUBJECTS):
        for label, tones in TONES.items():
            face = media.FACES[(i + (label == "sad")) % 2]
            media.write_clip(raw / subject / f"{label}.mp4", seconds=1.0, size=(160, 160), face=face, tones=tones)
            emo.append(f"{subject}/{label}.mp4,{label},{subject}")
            who.append(f"{subject}/{label}.mp4,{face},{subject}")
            va.append(f"{subject}/{label}.mp4,{subject},{0.5 if label == 'happy' else -0.5},{0.1 * i}")
    for name, rows in (("emo", emo), ("who", who), ("va", va)):
        (raw / f"{name}.csv").write_text("\n".join(rows) + "\n")
    params = _params(d, "data", "emo", {})
    with own_tracking_store(d):
        for name in ("emo", "who", "va"):
            data_stages(
                params,
                name,
                faces=d / "faces" / name,
                audio=d / "audio" / name,
                manifest=d / "manifests" / f"{name}.parquet",
                shards=d / "shards" / name,
                reports=d / "reports",
            )
        cluster.ensure_cluster(RayConfig(num_workers=2, cpus_per_worker=1.0))
        try:
            yield d
        finally:
            cluster.shutdown()


def _steps(report_dir: Path) -> int:
    return int(json.loads((report_dir / "metrics.json").read_text())["steps"])


@pytest.mark.parametrize("switches", ["defaults", "every-ablation"])
def test_every_stage_trains_on_two_workers(ws: Path, switches: str) -> None:
    extra = ABLATIONS if switches == "every-ablation" else {}
    run = ws / switches
    common = ["--manifests", str(ws / "manifests"), "--shards", str(ws / "shards"), "--storage", str(ws / "ray")]
    p = ["--params", str(_params(ws, switches, "emo", extra))]
    out = avf_ok(
        *p, "train", "pretrain", "--shards", str(ws / "shards"), "--out", str(run / "pretrain"),
        "--reports", str(run / "reports" / "pretrain"), "--storage", str(ws / "ray"),
    )  # fmt: skip
    assert "2 Ray workers" in out
    avf_ok(
        *p, "train", "intermediate", *common, "--pretrain", str(run / "pretrain"), "--out", str(run / "intermediate"),
        "--reports", str(run / "reports" / "intermediate"),
    )  # fmt: skip
    card = json.loads((run / "intermediate" / "card.json").read_text())
    assert set(card["datasets"]) == {"emo", "who"}  # two heads trained together
    # amp: auto, resolved alike by both workers on this machine and recorded in the card
    assert card["precision"] == precision_name(resolve_dtype("auto", torch.device("cpu")))
    for target in ("emo", "va"):
        p = ["--params", str(_params(ws, f"{switches}-{target}", target, extra))]
        avf_ok(
            *p, "train", "finetune", *common, "--pretrain", str(run / "pretrain"),
            "--intermediate", str(run / "intermediate"), "--out", str(run / target),
            "--reports", str(run / "reports" / target),
        )  # fmt: skip
        card = json.loads((run / target / "card.json").read_text())
        assert card["datasets"][target]["task"] == ("regression" if target == "va" else "classification")
    for stage in ("pretrain", "intermediate"):
        assert _steps(run / "reports" / stage) == 2, stage
