"""avf.predict on generated videos: windows, flags, training-exact preprocessing, sources, outputs, pictures."""

from __future__ import annotations

import argparse
import itertools
import json
import math
import shutil
from pathlib import Path
from typing import Any

import av
import cv2
import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from avf.cli import app
from avf.config.data import AudioConfig, ClipConfig, DataConfig, FaceConfig
from avf.config.predict import PredictConfig
from avf.data.audio import LOG_FLOOR
from avf.data.loader import ClipDataset
from avf.data.shards import INDEX_NAME, ShardIndex, ShardWriter
from avf.data.stages.audio import AudioJob, audio_job
from avf.data.stages.faces import FaceJob, face_job
from avf.data.stages.shards import ShardJob, shard_job
from avf.data.transforms import to_model_input
from avf.predict import Predictor, VideoPrediction
from avf.predict.export import example_inputs, export_package
from avf.predict.inputs import expand_inputs
from avf.predict.outputs import PredictionWriter, arrow_table, read_jsonl, video_frame, video_ids
from avf.predict.plot import timeline_png
from avf.predict.prepare import plan_windows
from avf.predict.render import render_video
from tests.support import media
from tests.support.predict_helpers import CLASSES, make_model_dir, probabilities, write_gap_video

SETTINGS = PredictConfig(window_s=2.0, stride_s=1.0)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_model_dir(tmp_path_factory.mktemp("model") / "finetune")


@pytest.fixture(scope="module")
def predictor(model_dir: Path) -> Predictor:
    return Predictor.from_uri(model_dir, SETTINGS)


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("videos")
    return {
        "talk": media.write_clip(d / "talk.mp4", seconds=3.5, tones=(300.0, 1200.0), tone_every=0.25),
        "mute": media.write_clip(d / "mute.mkv", seconds=3.0, audio=False),
        "gap": write_gap_video(d / "gap.mp4", seconds=6.0),
    }


@pytest.fixture(scope="module")
def results(predictor: Predictor, videos: dict[str, Path]) -> dict[str, VideoPrediction]:
    preds = predictor.predict_paths(list(videos.values()), progress=False, keep_prepared=True)
    return dict(zip(videos, preds, strict=True))


# ------------------------------------------------------------------------------------------- windows


@pytest.mark.parametrize(
    ("duration", "window", "stride"),
    [(0.4, 3.0, 1.0), (3.0, 3.0, 1.0), (3.04, 3.0, 1.0), (6.0, 3.0, 1.0), (7.3, 3.0, 1.0), (10.0, 2.56, 2.56)],
)
def test_windows_cover_the_whole_duration(duration: float, window: float, stride: float) -> None:
    spans = plan_windows(duration, window, stride)
    assert spans[0][0] == 0.0 and spans[-1][1] == pytest.approx(duration)
    for (s0, e0), (s1, _) in itertools.pairwise(spans):
        assert s0 < s1 <= e0 + 1e-9 and s1 - s0 <= stride + 1e-9  # no gap, never more than one stride
    assert all(e - s <= window + 1e-9 for s, e in spans)
    assert all(e - s == pytest.approx(min(window, duration)) for s, e in spans)


def test_per_window_outputs_cover_the_video_and_sum_to_one(results: dict[str, VideoPrediction]) -> None:
    res = results["talk"]
    assert res.ok and res.frames == 88 and res.duration_s == pytest.approx(88 / 25, abs=1e-3)
    assert [w.index for w in res.windows] == list(range(len(res.windows))) and len(res.windows) == 3
    assert res.windows[0].start_s == 0 and res.windows[-1].end_s == pytest.approx(res.duration_s)
    for w in res.windows:
        assert w.predicted and w.face and w.audio == "ok" and not w.reasons
        assert w.scores is not None and w.scores.shape == (len(CLASSES),) and (w.scores >= 0).all()
        assert float(w.scores.sum()) == pytest.approx(1.0, abs=1e-5)
    assert res.scores is not None and float(res.scores.sum()) == pytest.approx(1.0, abs=1e-5)
    np.testing.assert_allclose(res.scores, np.mean([w.scores for w in res.windows], axis=0), rtol=1e-6)


def test_windows_follow_the_content(results: dict[str, VideoPrediction]) -> None:
    scores = np.stack([w.scores for w in results["talk"].windows])  # type: ignore[misc]
    assert np.abs(np.diff(scores, axis=0)).max() > 1e-4  # different windows see different inputs


def test_video_without_audio_is_predicted_on_silence_and_flagged(
    predictor: Predictor, results: dict[str, VideoPrediction]
) -> None:
    res = results["mute"]
    assert res.ok and not res.has_audio
    assert all(w.audio == "missing" and w.predicted for w in res.windows)
    assert all("no audio: filled with silence" in w.reasons for w in res.windows)
    assert res.prepared is not None
    win = predictor.window_inputs(res.prepared)[0]
    audio = win.audio
    assert audio is not None and audio.shape == (predictor.views, 1, 256, 128)
    # Kaldi's floor for a zero signal, stored as float16 by the shards stage, then normalized
    silence = (float(np.float16(LOG_FLOOR)) - AudioConfig().norm_mean) / (2 * AudioConfig().norm_std)
    pad = (0.0 - AudioConfig().norm_mean) / (2 * AudioConfig().norm_std)  # rows past the window's audio
    rows = audio[0, 0]
    is_silence = torch.isclose(rows, torch.tensor(silence, dtype=rows.dtype)).all(-1)
    is_pad = torch.isclose(rows, torch.tensor(pad, dtype=rows.dtype)).all(-1)
    assert bool((is_silence | is_pad).all()) and int(is_silence.sum()) > 150 and bool(is_silence[0])


def test_no_face_in_the_middle_third_is_flagged_per_window(results: dict[str, VideoPrediction]) -> None:
    res = results["gap"]
    assert res.ok and len(res.windows) == 5  # 0-2, 1-3, 2-4, 3-5, 4-6 s; the middle third is 2-4 s
    inside, outside = res.windows[2], (res.windows[0], res.windows[4])
    assert not inside.predicted and not inside.face and inside.scores is None and inside.face_share < 0.1
    assert inside.reasons[0].startswith("no face: found in ") and inside.audio == "ok"
    assert all(w.predicted and w.face_share > 0.9 for w in outside)
    for w in res.windows:  # half-face windows (1-3 s, 3-5 s) follow the min_face_share rule
        assert w.predicted == (w.face_share >= PredictConfig().min_face_share)
        if w.predicted:
            assert w.scores is not None and float(w.scores.sum()) == pytest.approx(1, abs=1e-5)
    assert 0.4 < res.windows[1].face_share < 0.6 and 0.4 < res.windows[3].face_share < 0.6
    face = res.prepared.face if res.prepared else None
    assert face is not None and not face.covered[60:90].any() and face.covered[:40].all() and face.covered[-40:].all()


def test_video_without_a_face_or_unreadable_is_reported_and_the_rest_continues(
    predictor: Predictor, videos: dict[str, Path], tmp_path: Path
) -> None:
    noface = media.write_clip(tmp_path / "wall.mp4", seconds=2.0, face=None)
    junk = media.random_bytes(tmp_path / "junk.mp4")
    trunc = media.truncate(media.write_clip(tmp_path / "cut.mp4", seconds=3.0, faststart=True), 0.6)
    paths = [noface, junk, tmp_path / "missing.mov", trunc, videos["talk"]]
    out = list(predictor.predict_paths(paths, progress=False))
    assert [r.path for r in out] == [str(p) for p in paths]
    assert out[0].error is not None and "no face" in out[0].error and all(not w.face for w in out[0].windows)
    assert out[1].error is not None and "cannot open" in out[1].error and not out[1].windows
    assert out[2].error == "file not found"
    assert out[3].ok and out[3].warnings and out[3].frames < 75  # the decodable part of a truncated file
    assert out[4].ok


# ------------------------------------------------------------------------------ training preprocessing


@pytest.mark.parametrize("with_audio", [True, False])
def test_window_inputs_equal_the_training_pipeline(predictor: Predictor, tmp_path: Path, with_audio: bool) -> None:
    """The faces, audio and shards stages + the test loader give bit-identical tensors for the same span."""
    video = media.write_clip(tmp_path / "c.mp4", seconds=3.2, tones=(300, 1200, 3000), tone_every=0.3, audio=with_audio)
    face_cfg, audio_cfg, clip_cfg = FaceConfig(), AudioConfig(), ClipConfig()
    for sub in ("faces", "audio", "shards"):
        (tmp_path / sub).mkdir()
    fs = face_job(FaceJob("c", str(video), str(tmp_path / "faces"), face_cfg, "fp"))
    au = audio_job(
        AudioJob(
            "c", str(video), None, fs["times"][0], fs["duration_s"] + 0.5, 0.0, str(tmp_path / "audio"), audio_cfg, "fp"
        )
    )
    row = {
        "face_path": str(tmp_path / "faces" / "c.mkv"),
        "audio_path": str(tmp_path / "audio" / "c.wav"),
        "clip_id": "c",
        "dataset": "demo",
        "subject": "s",
        "label": 0,
        "label_name": "x",
        "targets": None,
        "test_fold": 1,
        "official_split": None,
        "fps": 25.0,
        "face_coverage": 1.0,
        "has_audio": au["has_audio"],
        "audio_status": au["audio_status"],
    }
    writer = ShardWriter(tmp_path / "shards", 1 << 30, 10)
    writer.write("demo__c", shard_job(ShardJob("demo__c", row, audio_cfg, True)))
    index = ShardIndex("demo", writer.close(), "fbank", "fp", {"num_mel_bins": 128})
    (tmp_path / "shards" / INDEX_NAME).write_text(json.dumps(index.to_json()))
    item = ClipDataset(tmp_path / "shards", train=False, clip=clip_cfg, audio=audio_cfg)[0]

    whole = Predictor(predictor.model, predictor.spec, PredictConfig(window_s=10.0))
    (win,) = whole.window_inputs(whole.prepare(video))
    assert win.audio_status == au["audio_status"] == ("ok" if with_audio else "missing")
    assert win.video is not None and torch.equal(win.video, to_model_input(item["video"]))
    assert win.audio is not None and torch.equal(win.audio, item["audio"])


# ------------------------------------------------------------------------------------------ sources


def _forward(p: Predictor) -> torch.Tensor:
    video, audio = example_inputs(p.spec, batch=2)
    with torch.inference_mode():
        return p.model(video, audio)


def test_every_model_source_loads_the_same_model(predictor: Predictor, model_dir: Path, tmp_path: Path) -> None:
    from avf.artifacts.official import write_converted
    from avf.models import to_official_state_dict

    ref = _forward(predictor)
    card = json.loads((model_dir / "card.json").read_text())
    # a .safetensors with its card next to it, and one elsewhere with the card given explicitly
    bare = tmp_path / "weights.safetensors"
    shutil.copy(model_dir / "model.safetensors", bare)
    sources = {
        "file": Predictor.from_uri(model_dir / "model.safetensors"),
        "explicit": Predictor.from_uri(bare, card=model_dir / "card.json"),
    }
    with pytest.raises(ValueError, match=r"no card\.json"):
        Predictor.from_uri(bare)
    # an official checkpoint (.pth) and its import by `avf model import-official` (.safetensors)
    official = {f"module.{k}": v for k, v in to_official_state_dict(predictor.model.state_dict()).items()}
    pth = tmp_path / "checkpoint-best.pth"
    torch.save({"module": official, "args": argparse.Namespace(lr=1e-3)}, pth)
    write_converted(pth, tmp_path / "imported.safetensors")
    sources["official"] = Predictor.from_uri(pth)
    sources["imported"] = Predictor.from_uri(tmp_path / "imported.safetensors", card=card)
    for name, p in sources.items():
        assert torch.equal(_forward(p), ref), name
    assert sources["official"].spec.outputs == ("class_0", "class_1", "class_2")  # no card: generic names
    assert sources["official"].spec.preprocessing_from == "defaults"
    assert sources["imported"].spec.outputs == CLASSES and sources["file"].spec.outputs == CLASSES


def test_bf16_runs_the_matmuls_in_bf16_and_predicts_what_fp32_predicts(
    model_dir: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    fp32 = Predictor.from_uri(model_dir, SETTINGS)
    bf16 = Predictor.from_uri(model_dir, SETTINGS, precision="bf16")
    video, audio = example_inputs(fp32.spec, batch=3, seed=4)
    dtypes: list[torch.dtype] = []
    for m in bf16.model.modules():
        if isinstance(m, torch.nn.Linear):
            m.register_forward_hook(lambda _m, _i, out: dtypes.append(out.dtype))
    ref, low = fp32.forward(video[:, None], audio[:, None]), bf16.forward(video[:, None], audio[:, None])
    assert dtypes and set(dtypes) == {torch.bfloat16}
    assert low.dtype == torch.float32 and torch.allclose(low.sum(-1), torch.ones(3))
    assert (low - ref).abs().max() < 0.02  # probabilities; bf16 keeps 8 bits of mantissa
    with pytest.raises(ValueError, match="bf16 runs in the torch runtime, not onnxruntime"):
        Predictor.from_uri(model_dir, SETTINGS, runtime="onnxruntime", precision="bf16")
    with pytest.raises(ValueError, match="unknown precision 'fp8'"):
        Predictor.from_uri(model_dir, SETTINGS, precision="fp8")
    monkeypatch.setattr("avf.predict.predictor.bf16_units", lambda: ())
    with caplog.at_level("WARNING", logger="avf.predict.predictor"):
        Predictor.from_uri(model_dir, SETTINGS, precision="bf16")
    assert "no bf16 matrix units" in caplog.text


def test_cpu_bf16_units_come_from_the_cpu_flags(tmp_path: Path) -> None:
    from avf.utils.cpu import bf16_units

    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512_bf16\n\nflags\t: fpu\n")
    assert bf16_units(info) == ("avx512_bf16",)
    info.write_text("flags\t: fpu sse2 avx2 amx_tile amx_bf16 avx512_bf16\n")
    assert bf16_units(info) == ("amx_bf16", "avx512_bf16")
    info.write_text("flags\t: fpu sse2 avx2\n")
    assert bf16_units(info) == () and bf16_units(tmp_path / "absent") == ()


def _with_card(model_dir: Path, out: Path, **changes: Any) -> Path:
    """A copy of a stage folder whose card has ``changes`` (None removes a key)."""
    shutil.copytree(model_dir, out)
    card = json.loads((out / "card.json").read_text())
    for key, value in changes.items():
        if value is None:
            del card[key]
        else:
            card[key] = value
    (out / "card.json").write_text(json.dumps(card))
    return out


def test_card_preprocessing_wins_and_older_cards_fall_back_to_params(model_dir: Path, tmp_path: Path) -> None:
    data = DataConfig(clip=ClipConfig(test_views=1), face=FaceConfig(margin=0.4))
    old = Predictor.from_uri(_with_card(model_dir, tmp_path / "old", preprocessing=None), data=data)
    assert old.spec.preprocessing_from == "defaults" and old.views == 1 and old.spec.face.margin == 0.4
    pre = json.loads((model_dir / "card.json").read_text())["preprocessing"]
    pre["clip"]["test_views"] = 3
    new = Predictor.from_uri(_with_card(model_dir, tmp_path / "new", preprocessing=pre), data=data)
    assert new.spec.preprocessing_from == "card" and new.views == 3 and new.spec.face.margin == 0.25
    assert Predictor(new.model, new.spec, PredictConfig(views=4)).views == 4  # params.predict.views overrides


def test_exported_package_round_trips(predictor: Predictor, videos: dict[str, Path], tmp_path: Path) -> None:
    config = export_package(predictor.model, predictor.spec, tmp_path / "pkg")
    pkg = tmp_path / "pkg"
    assert sorted(p.name for p in pkg.iterdir()) == ["assets", "config.json", "model.safetensors"]
    assert (pkg / "assets" / "face_detection_short_range.tflite").is_file()
    assert config["classes"] == list(CLASSES) and config["preprocessing"]["clip"]["test_views"] == 2
    moved = tmp_path / "elsewhere" / "pkg"  # self-contained: works from anywhere
    shutil.move(pkg, moved)
    loaded = Predictor.from_uri(moved, SETTINGS)
    assert loaded.spec.format == "package" and loaded.spec.outputs == CLASSES
    assert loaded.spec.preprocessing() == {
        k: ({**v, "detector_model": "assets/face_detection_short_range.tflite"} if k == "face" else v)
        for k, v in predictor.spec.preprocessing().items()
    }
    a = predictor.predict_video(videos["talk"])
    b = loaded.predict_video(videos["talk"])
    assert b.scores is not None and a.scores is not None and np.array_equal(a.scores, b.scores)
    assert all(np.array_equal(x.scores, y.scores) for x, y in zip(a.windows, b.windows, strict=True))  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------ outputs


def test_writer_records_jsonl_csv_and_arrow(
    predictor: Predictor, results: dict[str, VideoPrediction], tmp_path: Path
) -> None:
    preds = list(results.values())
    ids = video_ids([p.path for p in preds])
    with PredictionWriter(tmp_path, predictor.spec) as writer:
        for p, i in zip(preds, ids, strict=True):
            writer.write(p, i)
    windows, vids = read_jsonl(tmp_path / "windows.jsonl"), read_jsonl(tmp_path / "videos.jsonl")
    assert len(windows) == sum(len(p.windows) for p in preds) and [v["video_id"] for v in vids] == ids
    for rec in windows:
        if rec["predicted"]:
            assert sum(rec["probabilities"].values()) == pytest.approx(1.0, abs=1e-4)
            assert rec["label"] == max(rec["probabilities"], key=rec["probabilities"].get)
        else:
            assert rec["probabilities"] is None and rec["reason"].startswith("no face")
    csv = pd.read_csv(tmp_path / "windows.csv")
    assert list(csv.columns[-3:]) == [f"prob_{c}" for c in CLASSES] and len(csv) == len(windows)
    ok = csv[csv["predicted"]]
    np.testing.assert_allclose(ok[[f"prob_{c}" for c in CLASSES]].sum(axis=1), 1.0, atol=1e-4)
    frame = video_frame(preds, predictor.spec, ids)
    assert frame["video_id"].tolist() == ids and frame["ok"].all()
    np.testing.assert_allclose(frame[[f"prob_{c}" for c in CLASSES]].to_numpy(), [probabilities(v) for v in vids])
    table = arrow_table(preds, predictor.spec, ids)
    assert table.num_rows == 3 and [len(w) for w in table.column("windows").to_pylist()] == [
        len(p.windows) for p in preds
    ]


def test_regression_models_report_values(tmp_path: Path, videos: dict[str, Path]) -> None:
    p = Predictor.from_uri(make_model_dir(tmp_path / "va", outputs=("valence", "arousal"), task="regression"), SETTINGS)
    res = p.predict_video(videos["mute"])
    assert res.ok and p.spec.task == "regression" and res.scores is not None and res.scores.shape == (2,)
    with PredictionWriter(tmp_path / "out", p.spec) as w:
        rec = w.write(res, "mute")
    assert rec["values"].keys() == {"valence", "arousal"} and rec["label"] is None and "probabilities" not in rec
    assert list(pd.read_csv(tmp_path / "out" / "windows.csv").columns[-2:]) == ["pred_valence", "pred_arousal"]


def test_inputs_expand_folders_globs_and_manifests(tmp_path: Path) -> None:
    for name in ("a/x.mp4", "a/b/y.MKV", "a/notes.txt.bak", "c/z.avi"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "list.txt").write_text("c/z.avi\n# comment\n\n/abs/v.mp4\n")
    pd.DataFrame({"video_path": [str(tmp_path / "a/x.mp4")]}).to_csv(tmp_path / "m.csv", index=False)
    exts = PredictConfig().extensions
    got = expand_inputs(
        [tmp_path / "a", str(tmp_path / "**/*.avi"), tmp_path / "list.txt", tmp_path / "m.csv", tmp_path / "nope.webm"],
        exts,
    )
    assert got == [str(tmp_path / p) for p in ("a/b/y.MKV", "a/x.mp4", "c/z.avi")] + [
        "/abs/v.mp4",
        str(tmp_path / "nope.webm"),
    ]


# ----------------------------------------------------------------------------------------- pictures


def test_timeline_png_is_readable(predictor: Predictor, results: dict[str, VideoPrediction], tmp_path: Path) -> None:
    path = timeline_png(results["gap"], predictor.spec, tmp_path / "gap.png", thumbnails=6)
    img = cv2.imread(str(path))
    assert img is not None and img.shape[1] == 1000 and 400 < img.shape[0] < 700
    assert 20_000 < path.stat().st_size < 200_000
    assert img.std() > 30  # a real picture, not a blank canvas
    with pytest.raises(ValueError, match="keep_prepared"):
        timeline_png(VideoPrediction(path="x"), predictor.spec, tmp_path / "x.png")


@pytest.mark.parametrize("name", ["talk", "mute"])
def test_rendered_video_decodes_with_every_frame(
    predictor: Predictor, results: dict[str, VideoPrediction], tmp_path: Path, name: str
) -> None:
    res = results[name]
    path = render_video(res, predictor.spec, tmp_path / f"{name}.mp4")
    with av.open(str(path)) as c:
        assert c.streams.video[0].codec_context.name == "h264"
        assert bool(c.streams.audio) == res.has_audio
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    assert len(frames) == res.frames
    assert frames[0].shape[:2] == (256, 256)
    src = media.face_frames(1)[0]
    assert np.abs(frames[0][100:, :].astype(int) - src[100:, :]).mean() < 12  # the picture under the drawings


def test_predict_help() -> None:
    result = CliRunner().invoke(app, ["predict", "--help"])
    assert result.exit_code == 0 and "--model" in result.output and "--render" in result.output
    result = CliRunner().invoke(app, ["export", "--help"])
    assert result.exit_code == 0 and "--onnx" in result.output


def test_params_reject_gaps() -> None:
    with pytest.raises(ValueError, match="would leave gaps"):
        PredictConfig(window_s=1.0, stride_s=2.0)
    assert math.isclose(PredictConfig().window_s, 3.0)
