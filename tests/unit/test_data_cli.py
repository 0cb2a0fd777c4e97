"""`avf data faces|audio|manifest|shards|inspect` end to end on generated clips (real MediaPipe)."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import torch
import yaml
from typer.testing import CliRunner

from avf.cli import app
from avf.config.data import AudioConfig, ClipConfig, DataConfig, DatasetSpec, FaceConfig
from avf.data.adapters.base import Adapter, RawClip, ScanResult
from avf.data.audio import read_wav
from avf.data.inspect import corrupt_samples, first_sample
from avf.data.loader import ClipDataset
from avf.data.manifest import read_manifest
from avf.data.report import StageReport
from avf.data.shards import ShardIndex
from avf.data.stages import scan
from avf.data.stages.audio import run_audio
from avf.data.stages.faces import run_faces
from tests.support import media

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def raw(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("raw")
    media.write_clip(root / "spk1" / "happy.mp4", seconds=1.2, size=(192, 160))
    media.write_clip(root / "spk1" / "calm.mp4", seconds=1.0, size=(160, 160), face="grace_hopper")
    media.write_clip(root / "spk2" / "mute.mp4", seconds=1.0, size=(160, 160), audio=False)
    media.write_clip(root / "spk2" / "empty room.mp4", seconds=1.0, size=(160, 160), face=None)
    return root


def _params(tmp: Path, raw: Path, **data: Any) -> Path:
    params = {
        "data": {
            "datasets": {"demo": {"adapter": "folder", "raw_dir": str(raw), "roles": ["pretrain"]}},
            "target": "demo",
            "face": {
                "detector_model": str(ROOT / "models/assets/face_detection_short_range.tflite"),
                "landmark_model": str(ROOT / "models/assets/face_landmark.tflite"),
                **data.pop("face", {}),
            },
            "workers": 1,
            "max_fail_frac": 0.5,
            **data,
        }
    }
    path = tmp / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


def avf(params: Path, *args: str) -> Any:
    return CliRunner().invoke(app, ["--params", str(params), "data", *map(str, args)])


def _summary(tmp: Path, stage: str) -> dict[str, Any]:
    return json.loads((tmp / "reports" / stage / "demo" / "summary.json").read_text())


def _failures(tmp: Path, stage: str) -> list[dict[str, str]]:
    with open(tmp / "reports" / stage / "demo" / "failures.csv") as f:
        return list(csv.DictReader(f))


def test_pipeline_end_to_end(tmp_path: Path, raw: Path) -> None:
    p = _params(tmp_path, raw)
    faces, audio, manifest, shards, reports = (
        tmp_path / n for n in ("faces", "audio", "m.parquet", "shards", "reports")
    )
    r = avf(p, "faces", "--dataset", "demo", "--out", faces, "--reports", reports)
    assert r.exit_code == 0, r.output
    produced = {f.name for f in faces.iterdir()}
    assert produced == {f"spk{c}.{ext}" for c in ("1-happy", "1-calm", "2-mute") for ext in ("mkv", "json")} | {
        "spk2-empty_room.json"
    }
    assert _failures(tmp_path, "faces") == [
        {
            "file": str(raw / "spk2" / "empty room.mp4"),
            "clip_id": "spk2-empty_room",
            "reason": "no face: none found in 5 sampled frames",
        }
    ]
    s = _summary(tmp_path, "faces")
    assert (s["processed"], s["skipped"], s["failed"], s["failed_by_reason"]) == (3, 0, 1, {"no face": 1})
    sidecar = json.loads((faces / "spk1-happy.json").read_text())
    assert sidecar["status"] == "ok" and sidecar["frames_kept"] == 30 and sidecar["coverage"] == 1.0
    assert len(sidecar["times"]) == 30 and sidecar["times"][1] == pytest.approx(0.04)

    r = avf(p, "audio", "--dataset", "demo", "--faces", faces, "--out", audio, "--reports", reports)
    assert r.exit_code == 0, r.output
    s = _summary(tmp_path, "audio")
    assert (s["processed"], s["excluded"], s["flagged"]) == (3, 1, {"audio missing": 1})
    assert json.loads((audio / "spk2-mute.json").read_text())["audio_status"] == "missing"

    r = avf(
        p, "manifest", "--dataset", "demo", "--faces", faces, "--audio", audio, "--out", manifest, "--reports", reports
    )
    assert r.exit_code == 0, r.output
    df = read_manifest(manifest).set_index("clip_id")
    assert df.loc["spk1-happy", "status"] == "ok" and df.loc["spk1-happy", "subject"] == "spk1"
    assert df.loc["spk1-happy", "num_frames"] == 30 and df.loc["spk1-happy", "fps"] == pytest.approx(25.0)
    assert df.loc["spk2-mute", "audio_status"] == "missing" and df.loc["spk2-empty_room", "status"].startswith(
        "no face"
    )

    r = avf(p, "shards", "--dataset", "demo", "--manifest", manifest, "--out", shards, "--reports", reports)
    assert r.exit_code == 0, r.output
    assert _summary(tmp_path, "shards")["samples"] == 3

    r = avf(p, "inspect", shards, "--verify")
    assert r.exit_code == 0 and "verified 3 samples" in r.output, r.output
    index = ShardIndex.load(shards)
    first = first_sample(shards, index)
    assert first is not None and first.key == index.shards[0].keys[0] and first.others == ["fbank.npy", "meta.json"]
    assert first.jpg_frames in (25, 30) and list(corrupt_samples(shards, index)) == []
    bad = tmp_path / "bad_shards"
    shutil.copytree(shards, bad)
    last = index.shards[-1]
    with open(bad / last.name, "r+b") as f:  # zero the last sample's bytes: its tar header no longer parses
        f.seek(last.offsets[-1])
        f.write(bytes(last.sizes[-1]))
    assert [e.key for e in corrupt_samples(bad, index)] == [last.keys[-1]]
    r = avf(p, "inspect", bad, "--verify")
    assert r.exit_code == 1 and "1 corrupt sample(s)" in r.output, r.output
    r = avf(p, "inspect", manifest)
    assert r.exit_code == 0 and "4 clips, 2 subjects" in r.output, r.output

    ds = ClipDataset(shards, None, train=False, clip=ClipConfig(), audio=AudioConfig())
    item = ds[ds.keys.index("demo__spk1-happy")]
    assert item["video"].shape == (2, 16, 160, 160, 3) and item["label"].item() == -1
    assert torch.isfinite(item["audio"]).all()


def test_reruns_skip_done_clips_and_redo_them_when_params_change(tmp_path: Path, raw: Path) -> None:
    p = _params(tmp_path, raw)
    out, reports = tmp_path / "faces", tmp_path / "reports"
    assert avf(p, "faces", "-d", "demo", "--out", out, "--reports", reports).exit_code == 0
    before = (out / "spk1-happy.mkv").stat().st_mtime_ns
    r = avf(p, "faces", "-d", "demo", "--out", out, "--reports", reports)
    assert r.exit_code == 0
    s = _summary(tmp_path, "faces")
    assert (s["processed"], s["skipped"], s["failed"]) == (0, 3, 1)  # the failure is remembered, not redone
    assert (out / "spk1-happy.mkv").stat().st_mtime_ns == before
    p = _params(tmp_path, raw, face={"margin": 0.4})
    assert avf(p, "faces", "-d", "demo", "--out", out, "--reports", reports).exit_code == 0
    assert _summary(tmp_path, "faces")["processed"] == 3
    assert not list(out.glob(".*"))  # no temporary files left behind


def test_outputs_depend_on_input_content_not_modification_times(
    tmp_path: Path, raw: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same inputs give byte-identical outputs in another checkout (DVC experiment workspaces, clones):
    a copy of the raw data with other modification times yields the same sidecars, so DVC's run-cache hits
    downstream."""
    import os

    sidecars = {}
    for name, stamp in (("checkout", None), ("workspace", (1, 1))):
        ws = tmp_path / name
        shutil.copytree(raw, ws / "raw")
        if stamp:
            for f in (ws / "raw").rglob("*"):
                os.utime(f, ns=stamp)
        monkeypatch.chdir(ws)
        p = _params(ws, Path("raw"))
        avf(p, "faces", "-d", "demo", "--out", Path("faces"), "--reports", Path("reports"))
        sidecars[name] = {f.name: f.read_bytes() for f in (ws / "faces").glob("*.json")}
    assert sidecars["checkout"] and sidecars["checkout"] == sidecars["workspace"]


def test_failure_share_above_the_threshold_exits_1(tmp_path: Path, raw: Path) -> None:
    p = _params(tmp_path, raw, max_fail_frac=0.1)
    r = avf(p, "faces", "-d", "demo", "--out", tmp_path / "faces", "--reports", tmp_path / "reports")
    assert r.exit_code == 1
    assert "1 of 4 clips failed (25.0% > data.max_fail_frac 10.0%)" in r.output
    assert _summary(tmp_path, "faces")["passed"] is False


def test_usage_and_missing_input_errors(tmp_path: Path, raw: Path) -> None:
    p = _params(tmp_path, raw)
    r = avf(p, "faces", "-d", "nope", "--out", tmp_path / "f")
    assert r.exit_code == 2 and "unknown dataset 'nope'" in r.output
    p = _params(tmp_path, tmp_path / "missing")
    r = avf(p, "faces", "-d", "demo", "--out", tmp_path / "f", "--reports", tmp_path / "reports")
    assert r.exit_code == 3 and "not found" in r.output
    r = avf(p, "shards", "-d", "demo", "--manifest", tmp_path / "none.parquet", "--out", tmp_path / "s")
    assert r.exit_code == 3 and "manifest not found" in r.output


@pytest.mark.slow
@pytest.mark.parametrize("executor", ["process", "ray"])
def test_parallel_executors_give_the_same_outputs(tmp_path: Path, raw: Path, executor: str) -> None:
    inline = _params(tmp_path, raw)
    assert avf(inline, "faces", "-d", "demo", "--out", tmp_path / "a", "--reports", tmp_path / "r1").exit_code == 0
    fanned = _params(tmp_path, raw, workers=2, executor=executor)
    try:
        r = avf(fanned, "faces", "-d", "demo", "--out", tmp_path / "b", "--reports", tmp_path / "r2")
    finally:
        if executor == "ray":
            import ray

            ray.shutdown()
    assert r.exit_code == 0, r.output
    for sidecar in (tmp_path / "a").glob("*.json"):
        a, b = json.loads(sidecar.read_text()), json.loads((tmp_path / "b" / sidecar.name).read_text())
        assert a["status"] == b["status"] and a["times"] == b["times"] if "times" in a else a == b
    for clip in (tmp_path / "a").glob("*.mkv"):
        assert clip.read_bytes() == (tmp_path / "b" / clip.name).read_bytes()


class _ListAdapter(Adapter):
    """Returns the clips it was given (to exercise the ``RawClip.extra`` conventions)."""

    def __init__(self, clips: list[RawClip]) -> None:
        super().__init__()
        self.clips = clips

    def scan(self, root: Path) -> ScanResult:
        return ScanResult(list(self.clips))


def _face_cfg() -> DataConfig:
    face = FaceConfig(
        detector_model=str(ROOT / "models/assets/face_detection_short_range.tflite"),
        landmark_model=str(ROOT / "models/assets/face_landmark.tflite"),
    )
    return DataConfig(face=face, workers=1)


def test_stages_honour_frame_folders_time_windows_and_speaker_halves(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a MAFW/DFEW-style frame folder (1.jpg, 2.jpg, ... 10.jpg sorted naturally) with its own wav
    frames_dir = tmp_path / "frames" / "00001"
    frames_dir.mkdir(parents=True)
    for i, frame in enumerate(media.face_frames(20, (128, 128)), 1):
        cv2.imwrite(str(frames_dir / f"{i}.jpg"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    wav = media.write_wav(tmp_path / "00001.wav", media.tone_schedule((440.0,), 1.0, 16000), 16000)
    # an IEMOCAP-style dialog: two people side by side, the utterance is 1.0-2.0 s of the right speaker
    left, right = media.face_frames(75, (128, 160)), media.face_frames(75, (128, 160), face="grace_hopper")
    dialog = media.write_video(
        tmp_path / "dialog.mp4", [np.hstack([a, b]) for a, b in zip(left, right, strict=True)],
        audio=media.tone_schedule((300.0, 1200.0), 3.0, 16000, every=1.0),
    )  # fmt: skip
    # a DFEW clip_224x224_16f-style folder: 16 frames spread over a 3 s clip, timed by its wav
    sixteen = tmp_path / "frames" / "16f"
    sixteen.mkdir(parents=True)
    for i, frame in enumerate(media.face_frames(16, (128, 128)), 1):
        cv2.imwrite(str(sixteen / f"16f_{i:05d}.jpg"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    long_wav = media.write_wav(tmp_path / "16f.wav", media.tone_schedule((300.0, 1200.0), 3.0, 16000, 1.5), 16000)
    clips = [
        RawClip("00001", "x", "s1", frames_dir, audio_path=wav, extra={"frames": True, "fps": 20.0}),
        RawClip("16f", "x", "s4", sixteen, audio_path=long_wav, extra={"frames": True}),
        RawClip("utt", "x", "s2", dialog, extra={"start": 1.0, "end": 2.0, "crop": "right"}),
        RawClip("quiet", "x", "s3", frames_dir, extra={"frames": True, "no_audio": True}),
    ]
    monkeypatch.setattr(scan, "get_adapter", lambda name, **options: _ListAdapter(clips))
    spec = DatasetSpec(name="x", adapter="list", raw_dir=str(tmp_path))
    faces, audio = tmp_path / "faces", tmp_path / "audio"
    run_faces(spec, faces, _face_cfg(), StageReport("faces", "x"))
    report = StageReport("audio", "x")
    run_audio(spec, faces, audio, _face_cfg(), report)
    assert report.failed == 0 and report.flags == {"audio missing": 1}

    folder = json.loads((faces / "00001.json").read_text())
    assert folder["status"] == "ok" and folder["frames_kept"] == 20 and folder["timing"] == "release_fps"
    assert folder["times"][:3] == [0.0, 0.05, 0.1]  # 20 fps from extra["fps"]
    assert json.loads((faces / "quiet.json").read_text())["timing"] == "assumed_fps"
    # frame i at i / 15 of the 3 s wav (the official reader's pairing), not at i / 25 s
    spread = json.loads((faces / "16f.json").read_text())
    assert spread["timing"] == "audio_span" and spread["times"][1] == pytest.approx(0.2)
    assert spread["times"][-1] == pytest.approx(3.0)
    x = read_wav(audio / "16f.wav")
    assert len(x) >= 3.0 * 16000  # the whole clip's audio, the second tone included
    spectrum = np.abs(np.fft.rfft(x[32000:40000]))
    assert np.fft.rfftfreq(8000, 1 / 16000)[spectrum.argmax()] == pytest.approx(1200, abs=5)

    utt = json.loads((faces / "utt.json").read_text())
    assert utt["status"] == "ok" and utt["frames_kept"] == 25
    assert utt["times"][0] == pytest.approx(1.0) and utt["times"][-1] == pytest.approx(1.96)
    assert len(utt["boxes"]) == 25 and all(box[0] > 128 for box in utt["boxes"])  # the right-hand speaker's face
    x = read_wav(audio / "utt.wav")  # starts at the utterance (1.0 s): the second tone
    spectrum = np.abs(np.fft.rfft(x[:8000]))
    assert np.fft.rfftfreq(8000, 1 / 16000)[spectrum.argmax()] == pytest.approx(1200, abs=5)
    assert json.loads((audio / "quiet.json").read_text())["audio_status"] == "missing"


def test_frame_folder_timing_rules(tmp_path: Path) -> None:
    from avf.data.stages.faces import frame_folder_timing

    three = media.write_wav(tmp_path / "3s.wav", media.tone_schedule((440.0,), 3.0, 16000), 16000)
    blip = media.write_wav(tmp_path / "blip.wav", media.tone_schedule((440.0,), 0.02, 16000), 16000)
    assert frame_folder_timing(None, str(three), 16) == (pytest.approx(5.0), "audio_span", None)
    assert frame_folder_timing(30.0, str(three), 16) == (30.0, "release_fps", None)
    assert frame_folder_timing(None, None, 16) == (25.0, "assumed_fps", None)
    fps, rule, note = frame_folder_timing(None, str(blip), 16)  # a cut wav: 750 fps is not a video
    assert (fps, rule) == (25.0, "assumed_fps") and note == "16 frames over 0.02 s of audio would be 750.0 fps"
    (tmp_path / "bad.wav").write_bytes(b"RIFF0000WAVEjunk")
    fps, rule, note = frame_folder_timing(None, str(tmp_path / "bad.wav"), 16)
    assert (fps, rule) == (25.0, "assumed_fps") and note is not None and note.startswith("audio unreadable")
