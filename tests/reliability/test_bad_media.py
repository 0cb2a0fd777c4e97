"""Broken and odd media through the whole preprocessing (``avf data faces -> audio -> manifest -> shards``).

A corpus generated here (real files written with PyAV, see ``tests/support/media.py``) mixes good clips with
every kind of bad input, laid out for the generic ``folder`` adapter, including non-UTF-8 file and
folder names (Linux names are bytes). Each unusable file is reported in ``failures.csv`` with its
reason, odd-but-usable files are processed correctly, no stage crashes, the failure threshold decides
the exit code, and every usable clip comes out in the shards.
"""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from avf.data.adapters.folder import FolderAdapter
from avf.data.audio import read_wav
from avf.data.loader import unpack_sample
from avf.data.shards import ShardIndex, read_sample, sample_key
from tests.support import media

pytestmark = [pytest.mark.reliability, pytest.mark.slow, pytest.mark.timeout(900)]

AVF = str(Path(sys.executable).with_name("avf"))
ROOT = Path(__file__).resolve().parents[2]
SHORT: dict[str, Any] = {"seconds": 1.0, "size": (128, 128)}
NON_UTF8_GOOD = b"caf\xe9.mp4"  # Latin-1 "café": a valid Linux name that is not UTF-8
NON_UTF8_BAD = b"broken \xff.mp4"
NON_UTF8_FOLDER = b"spk\xe9"

# unusable files: name in failures.csv (undecodable bytes as \xNN) -> reason
BAD = {
    "truncated.mp4": r"^cannot open: .*(corrupt, truncated or not a media file|truncated file\?)",
    "random.mp4": r"^cannot open: Invalid data found when processing input \(corrupt, truncated or not a media",
    "zero_frames.mp4": r"^no decodable video frames$",
    "audio_only.mp4": r"^no video stream \(container 'wav'\)$",
    "one_frame.mp4": r"^too few frames: 1 < min_frames 8$",
    "broken \\xff.mp4": r"^cannot open: Invalid data found when processing input",
}
# usable files (relative path as bytes), odd ones included
GOOD = [
    b"s/good.mp4",
    b"s/grace.mp4",
    b"s/name with spaces.mp4",
    b"s/video_only.mp4",  # no audio stream: kept with silent audio (missing_policy fill), flagged
    b"s/stereo8k.mp4",  # 8 kHz stereo: resampled to 16 kHz mono
    b"s/huge.mp4",  # 4000x3000, 10 frames: detected on a 640-px copy
    b"s/rotated.mp4",  # portrait phone video with a 90 degree display matrix
    b"s/" + NON_UTF8_GOOD,
    NON_UTF8_FOLDER + b"/take.mp4",
]


def _params(max_fail_frac: float) -> dict[str, Any]:
    return {
        "data": {
            "datasets": {"odd": {"adapter": "folder", "raw_dir": "raw", "roles": ["pretrain"]}},
            "target": "odd",
            "face": {"detector_model": str(ROOT / "models/assets/face_detection_short_range.tflite")},
            "workers": 1,
            "max_fail_frac": max_fail_frac,
        },
    }


def _corpus(raw: Path) -> None:
    s = raw / "s"
    media.write_clip(s / "good.mp4", **SHORT)
    media.write_clip(s / "grace.mp4", face="grace_hopper", **SHORT)
    media.write_clip(s / "name with spaces.mp4", **SHORT)
    media.write_clip(s / "video_only.mp4", audio=False, **SHORT)
    media.write_clip(s / "stereo8k.mp4", sample_rate=8000, channels=2, tones=(1000.0,), **SHORT)
    media.write_clip(s / "huge.mp4", seconds=0.4, size=(4000, 3000))
    media.write_clip(s / "rotated.mp4", seconds=1.0, size=(96, 160), rotation=90)
    media.write_clip(s / "tmp_good.mp4", **SHORT)
    os.rename(os.fsencode(s / "tmp_good.mp4"), os.fsencode(s) + b"/" + NON_UTF8_GOOD)
    folder = os.fsencode(raw) + b"/" + NON_UTF8_FOLDER
    os.mkdir(folder)
    media.write_clip(s / "tmp_take.mp4", face="grace_hopper", **SHORT)
    os.rename(os.fsencode(s / "tmp_take.mp4"), folder + b"/take.mp4")

    media.truncate(media.write_clip(s / "truncated.mp4", **SHORT), 0.5)
    media.random_bytes(s / "random.mp4")
    media.write_no_frames(s / "zero_frames.mp4")
    media.write_wav(s / "audio_only.mp4", media.tone_schedule((440.0,), 1.0, 16000), 16000)
    media.write_clip(s / "one_frame.mp4", seconds=0.04, size=(128, 128))
    media.random_bytes(s / "tmp_bad.mp4", seed=1)
    os.rename(os.fsencode(s / "tmp_bad.mp4"), os.fsencode(s) + b"/" + NON_UTF8_BAD)


def _avf(root: Path, *args: str, params: str = "params.yaml") -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([AVF, "-p", params, *args], cwd=root, capture_output=True, text=True, timeout=600)
    assert "Traceback" not in proc.stderr, proc.stderr[-4000:]
    return proc


def _failures(root: Path, stage: str, reports: str = "reports") -> dict[str, str]:
    with (root / reports / stage / "odd" / "failures.csv").open(encoding="utf-8") as f:  # strict UTF-8
        return {row["file"].rsplit("/", 1)[-1]: row["reason"] for row in csv.DictReader(f)}


def _summary(root: Path, stage: str) -> dict[str, Any]:
    return json.loads((root / "reports" / stage / "odd" / "summary.json").read_text())


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The corpus through the four stages (``max_fail_frac: 1.0``: every stage must finish)."""
    root = tmp_path_factory.mktemp("badmedia")
    _corpus(root / "raw")
    for name, frac in (("params.yaml", 1.0), ("strict.yaml", 0.2), ("lenient.yaml", 0.5)):
        (root / name).write_text(yaml.safe_dump(_params(frac)))
    rep = ["--dataset", "odd", "--reports", "reports"]
    for args in (
        ["faces", "--out", "faces"],
        ["audio", "--faces", "faces", "--out", "audio"],
        ["manifest", "--faces", "faces", "--audio", "audio", "--out", "manifest.parquet"],
        ["shards", "--manifest", "manifest.parquet", "--out", "shards"],
    ):
        proc = _avf(root, "data", *args, *rep)
        assert proc.returncode == 0, f"{args[0]} exited {proc.returncode}:\n{proc.stderr[-4000:]}"
    return root


@pytest.mark.parametrize("stage", ["faces", "manifest"])
def test_every_unusable_file_is_reported_with_its_reason(pipeline: Path, stage: str) -> None:
    failures = _failures(pipeline, stage)
    assert sorted(failures) == sorted(BAD), failures
    for name, reason in BAD.items():
        assert re.search(reason, failures[name]), (name, failures[name])
    summary = _summary(pipeline, stage)
    assert summary["failed"] == len(BAD) and summary["processed"] == len(GOOD)


def test_audio_and_shards_stages_skip_the_failed_clips(pipeline: Path) -> None:
    audio, shards = _summary(pipeline, "audio"), _summary(pipeline, "shards")
    assert (audio["processed"], audio["failed"], audio["excluded"]) == (len(GOOD), 0, len(BAD))
    assert audio["flagged"] == {"audio missing": 1}
    assert (shards["processed"], shards["failed"], shards["excluded"]) == (len(GOOD), 0, len(BAD))


def test_every_usable_clip_comes_out_in_the_shards(pipeline: Path) -> None:
    adapter = FolderAdapter()
    expected = {sample_key("odd", adapter.clip_id(Path(os.fsdecode(rel)))) for rel in GOOD}
    index = ShardIndex.load(pipeline / "shards")
    assert sorted(index.keys) == sorted(expected)
    for key, (shard, offset, size) in index.locate().items():
        sample = unpack_sample(read_sample(pipeline / "shards" / index.shards[shard].name, offset, size, key), key)
        assert len(sample.frames) == sample.meta["num_frames"] >= 8 and sample.fbank is not None
        assert sample.meta["has_audio"] == (not key.endswith("video_only"))


def test_odd_but_usable_inputs_are_processed_correctly(pipeline: Path) -> None:
    def face(clip: str) -> dict[str, Any]:
        return json.loads((pipeline / "faces" / f"{clip}.json").read_text())

    rotated = face("s-rotated")
    assert (rotated["width"], rotated["height"], rotated["rotation"], rotated["coverage"]) == (96, 160, 90, 1.0)
    huge = face("s-huge")
    assert (huge["width"], huge["height"], huge["frames_kept"], huge["status"]) == (4000, 3000, 10, "ok")
    stereo = json.loads((pipeline / "audio" / "s-stereo8k.json").read_text())
    assert (stereo["source_rate"], stereo["source_channels"], stereo["audio_status"]) == (8000, 2, "ok")
    assert len(read_wav(pipeline / "audio" / "s-stereo8k.wav")) == pytest.approx(
        16000, abs=800
    )  # all 1 s of it, at 16 kHz
    silent = json.loads((pipeline / "audio" / "s-video_only.json").read_text())
    assert (silent["audio_status"], silent["has_audio"]) == ("missing", False)


def test_non_utf8_names_are_kept_readable_in_the_manifest_and_reports(pipeline: Path) -> None:
    import pandas as pd

    df = pd.read_parquet(pipeline / "manifest.parquet").set_index("clip_id")
    assert df.loc["s-caf", "video_path"] == "raw/s/caf\\xe9.mp4" and df.loc["s-caf", "status"] == "ok"
    assert df.loc["spk-take", "subject"] == "spk\\xe9" and df.loc["spk-take", "status"] == "ok"
    assert df.loc["s-broken", "video_path"] == "raw/s/broken \\xff.mp4"
    assert json.loads((pipeline / "faces" / "s-caf.json").read_text())["source"] == os.fsdecode(b"raw/s/caf\xe9.mp4")


def test_the_failure_threshold_decides_the_exit_code(pipeline: Path) -> None:
    frac = len(BAD) / (len(BAD) + len(GOOD))
    assert 0.2 < frac < 0.5
    rep = ["data", "faces", "--dataset", "odd", "--out", "faces", "--reports"]
    strict = _avf(pipeline, *rep, "reports-strict", params="strict.yaml")
    assert strict.returncode == 1 and "data.max_fail_frac 20.0%" in strict.stderr, strict.stderr[-2000:]
    assert sorted(_failures(pipeline, "faces", "reports-strict")) == sorted(BAD)  # cached failures, still listed
    summary = json.loads((pipeline / "reports-strict/faces/odd/summary.json").read_text())
    assert summary["passed"] is False and summary["failed"] == len(BAD) and summary["skipped"] == len(GOOD)
    lenient = _avf(pipeline, *rep, "reports-lenient", params="lenient.yaml")
    assert lenient.returncode == 0, lenient.stderr[-2000:]
    assert json.loads((pipeline / "reports-lenient/faces/odd/summary.json").read_text())["passed"] is True
