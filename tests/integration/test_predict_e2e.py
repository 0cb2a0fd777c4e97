"""End to end: `avf predict` / `avf export` on generated videos, ONNX vs PyTorch, the MLflow pyfunc, Ray."""

from __future__ import annotations

import contextlib
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch

from avf import tracking
from avf.config import parse_params
from avf.predict import Predictor
from avf.predict.export import example_inputs
from avf.predict.outputs import read_jsonl
from tests.support import media
from tests.support.cli import invoke
from tests.support.predict_helpers import CLASSES, make_model_dir
from tests.support.services import mlflow_server
from tests.support.services_s3 import s3_server

PARAMS = "predict:\n  window_s: 2.0\n  stride_s: 1.0\n"
PROBS = [f"prob_{c}" for c in CLASSES]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("predict-e2e")
    (d / "params.yaml").write_text(PARAMS)
    vids = d / "videos"
    media.write_clip(vids / "talk.mp4", seconds=3.0, tones=(300.0, 900.0), tone_every=0.3)
    media.write_clip(vids / "phone.mov", seconds=2.5, size=(144, 256), rotation=90)
    media.write_clip(vids / "nested" / "mute.mkv", seconds=2.0, audio=False)
    media.random_bytes(vids / "broken.mp4")
    return {"root": d, "videos": vids, "model": make_model_dir(d / "models" / "finetune")}


def _avf(ws: dict[str, Path], *args: str) -> Any:
    result = invoke("--params", str(ws["root"] / "params.yaml"), *args)
    assert result.exit_code == 0, result.output
    return result


@pytest.fixture(scope="module")
def cli_out(workspace: dict[str, Path]) -> Path:
    out = workspace["root"] / "out"
    _avf(
        workspace,
        "predict",
        str(workspace["videos"]),
        "--model",
        str(workspace["model"]),
        "--out",
        str(out),
        "--plot",
        "--render",
    )
    return out


def test_cli_predicts_a_folder_with_pictures(cli_out: Path, workspace: dict[str, Path]) -> None:
    videos = read_jsonl(cli_out / "videos.jsonl")
    by_id = {v["video_id"]: v for v in videos}
    assert sorted(by_id) == ["broken", "mute", "phone", "talk"]
    assert not by_id["broken"]["ok"] and "cannot open" in by_id["broken"]["error"]
    for vid in ("mute", "phone", "talk"):
        rec = by_id[vid]
        assert rec["ok"] and sum(rec["probabilities"].values()) == pytest.approx(1, abs=1e-4)
        assert (cli_out / "plots" / f"{vid}.png").stat().st_size > 20_000
        assert (cli_out / "renders" / f"{vid}.mp4").stat().st_size > 5_000
    assert by_id["mute"]["windows_no_audio"] == by_id["mute"]["num_windows"] and not by_id["mute"]["has_audio"]
    assert (by_id["phone"]["width"], by_id["phone"]["height"]) == (144, 256)  # as displayed (rotation applied)
    windows = pd.read_csv(cli_out / "windows.csv")
    for vid, group in windows.groupby("video_id"):
        assert group["start_s"].min() == 0 and group["end_s"].max() == pytest.approx(by_id[vid]["duration_s"])
    assert len(windows) == sum(v["num_windows"] for v in videos)


def _predict_again(
    cli_out: Path, workspace: dict[str, Path], out: Path, *flags: str
) -> tuple[list[str], list[str], list[tuple[dict, dict]]]:
    """``avf predict`` of two videos with ``flags``: (videos, model args, [(video record, the default run's)])."""
    videos = [str(workspace["videos"] / n) for n in ("talk.mp4", "nested/mute.mkv")]
    model = ["--model", str(workspace["model"])]
    _avf(workspace, "predict", *videos, *model, "--out", str(out), *flags)
    default = {v["video_id"]: v for v in read_jsonl(cli_out / "videos.jsonl")}
    return videos, model, [(rec, default[rec["video_id"]]) for rec in read_jsonl(out / "videos.jsonl")]


def test_onnx_runtime_predicts_what_pytorch_predicts(cli_out: Path, workspace: dict[str, Path]) -> None:
    out = workspace["root"] / "out-onnx"
    videos, model, pairs = _predict_again(cli_out, workspace, out, "--runtime", "onnxruntime")
    for rec, ref in pairs:
        assert rec["ok"] and rec["label"] == ref["label"]
        for c in CLASSES:
            assert rec["probabilities"][c] == pytest.approx(ref["probabilities"][c], abs=2e-6)  # written to 6 places
    eager = Predictor.from_uri(workspace["model"])
    onnx = Predictor.from_uri(workspace["model"], runtime="onnxruntime")
    video, audio = example_inputs(eager.spec, batch=3, seed=4)
    with torch.inference_mode():
        logits = eager.model(video, audio)
    ort_logits = onnx.forward(video[:, None], audio[:, None]).log()  # one view: log of the softmax
    assert torch.allclose(ort_logits, logits.log_softmax(-1), rtol=1e-4, atol=1e-5)
    bad = invoke("--params", str(workspace["root"] / "params.yaml"), "predict", videos[0], *model, "--out", str(out),
                 "--runtime", "tensorrt")  # fmt: skip
    assert bad.exit_code == 2 and "--runtime tensorrt: one of torch, onnxruntime" in bad.output


def test_bf16_predicts_what_fp32_predicts(cli_out: Path, workspace: dict[str, Path]) -> None:
    out = workspace["root"] / "out-bf16"
    videos, model, pairs = _predict_again(cli_out, workspace, out, "--precision", "bf16")
    for rec, ref in pairs:
        assert rec["ok"] and rec["num_windows"] == ref["num_windows"]
        for c in CLASSES:
            assert rec["probabilities"][c] == pytest.approx(ref["probabilities"][c], abs=0.02)
    bad = invoke("--params", str(workspace["root"] / "params.yaml"), "predict", videos[0], *model, "--out", str(out),
                 "--precision", "fp8")  # fmt: skip
    assert bad.exit_code == 2 and "--precision fp8: one of fp32, bf16" in bad.output


def test_cli_exports_a_package_and_onnx_that_agree(workspace: dict[str, Path]) -> None:
    import onnxruntime as ort

    pkg = workspace["root"] / "package"
    result = _avf(workspace, "export", str(workspace["model"]), "--out", str(pkg), "--onnx")
    config = json.loads((pkg / "config.json").read_text())
    assert config["files"]["onnx"] == "model.onnx" and config["onnx_max_abs_diff"] < 1e-4, result.output
    assert config["avf_version"] and config["classes"] == list(CLASSES)
    # ONNX on the real model inputs of a window (its test-time views) equals the PyTorch forward
    pred = Predictor.from_uri(pkg)
    assert pred.spec.format == "package"
    win = next(w for w in pred.window_inputs(pred.prepare(workspace["videos"] / "talk.mp4")) if w.has_face)
    assert win.video is not None and win.audio is not None
    session = ort.InferenceSession(str(pkg / "model.onnx"), providers=["CPUExecutionProvider"])
    (onnx_logits,) = session.run(["logits"], {"video": win.video.numpy(), "audio": win.audio.numpy()})
    with torch.inference_mode():
        torch_logits = pred.model(win.video, win.audio).numpy()
    np.testing.assert_allclose(onnx_logits, torch_logits, atol=1e-4, rtol=1e-4)


# ------------------------------------------------------------------------------------ MLflow pyfunc


@pytest.fixture(params=["sqlite", "server-s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """An embedded SQLite store with local artifacts, or a real MLflow server whose artifacts go to ``s3://``
    (moto's S3 server on 127.0.0.1): the server holds the S3 credentials, the client only talks to MLflow."""
    monkeypatch.setenv(tracking.BUFFER_DIR_ENV, str(tmp_path / "buffer"))
    monkeypatch.setenv(tracking.MODEL_CACHE_ENV, str(tmp_path / "downloads"))
    for var in ("DVC_EXP_NAME", tracking.PARENT_RUN_ENV, "PREFECT__FLOW_RUN_ID", "PREFECT_FLOW_RUN_ID"):
        monkeypatch.delenv(var, raising=False)
    params = parse_params({"tracking": {"artifact_root": str(tmp_path / "artifacts")}, "predict": {"window_s": 2.0}})
    with contextlib.ExitStack() as stack:
        s3 = None
        uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
        if request.param == "server-s3":
            s3 = stack.enter_context(s3_server(tmp_path / "s3"))
            s3.make_bucket("mlflow")
            with monkeypatch.context() as server_env:  # the server process keeps these; this one does not
                for key, value in s3.client_env({}).items():
                    server_env.setenv(key, value)
                server = stack.enter_context(
                    mlflow_server(tmp_path / "mlflow-server", artifacts_destination="s3://mlflow/artifacts")
                )
            uri = server.url
        monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
        tracking.configure(params)
        yield {"uri": uri, "params": params, "s3": s3}


def test_register_stage_serves_a_pyfunc_that_predicts_like_avf_predict(
    store: dict[str, Any], cli_out: Path, workspace: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """run_supervised("finetune") with the training loop stubbed out (same weights as ``workspace["model"]``),
    then the register stage: the card records the preprocessing, the served pyfunc is logged under the
    fine-tuning run, and, loaded by URI or from the registry, predicts what `avf predict` wrote."""
    import mlflow
    import mlflow.pyfunc

    from avf.data.splits import DatasetSplits
    from avf.train import stages

    run_dir = tmp_path / "ray" / "finetune-run"
    ckpt = run_dir / "checkpoint_000000001"
    ckpt.mkdir(parents=True)
    shutil.copy(workspace["model"] / "model.safetensors", ckpt / "model.safetensors")
    state = {"step": 1, "epoch": 1, "precision": "fp32", "history": [], "curve": []}
    (ckpt / "state.json").write_text(json.dumps({"loop": state}))
    split = DatasetSplits("ravdess", tmp_path / "shards", ["k"], [], ["t"], "classification", 3, CLASSES)
    monkeypatch.setattr(stages, "dataset_splits", lambda *a, **k: split)
    monkeypatch.setattr(stages, "_execute", lambda *a, **k: (ckpt, state, run_dir))
    params = store["params"]
    out, reports = tmp_path / "models" / "finetune", tmp_path / "reports" / "finetune"
    stages.run_supervised(params, "finetune", tmp_path, tmp_path, out, reports, tmp_path / "ray", None, None)

    assert not run_dir.exists(), "the finished run's checkpoints are removed once the output is written"
    card = json.loads((out / "card.json").read_text())
    assert card["preprocessing"]["clip"] == params.data.clip.model_dump(mode="json")
    assert card["preprocessing"]["face"]["detector_model"] == params.data.face.detector_model
    run_file = tracking.read_run_file(reports / "mlflow_run.json")
    assert "model_uri" not in run_file  # training logs no served model: the register stage does
    reg = ["registry", "register", "--model-dir", str(out), "--from-run-file", str(reports / "mlflow_run.json")]
    _avf(workspace, *reg, "--name", "avf-predict-test", "--alias", "champion", "--out", str(tmp_path / "reg.json"))
    assert tracking.get_alias_version("avf-predict-test", "champion") == 1
    uri = json.loads((tmp_path / "reg.json").read_text())["model_uri"]
    assert uri.startswith("models:/")
    logged = mlflow.MlflowClient().get_logged_model(uri.removeprefix("models:/"))
    assert logged.experiment_id == run_file["experiment_id"]  # under the run's experiment and artifact root
    if store["s3"] is None:
        assert str(tmp_path / "artifacts") in logged.artifact_location
    else:  # proxied by the server (mlflow-artifacts:/...), stored in the bucket
        assert logged.artifact_location.startswith("mlflow-artifacts:")
        keys = store["s3"].keys("mlflow", "artifacts/")
        assert any(k.endswith("/MLmodel") for k in keys) and any(k.endswith(".safetensors") for k in keys), keys

    paths = [str(workspace["videos"] / n) for n in ("talk.mp4", "nested/mute.mkv", "broken.mp4")]
    model = mlflow.pyfunc.load_model(uri)
    assert model.metadata.get_input_schema().input_names() == ["video"]  # the logged input signature
    frame = model.predict(pd.DataFrame({"video": paths}))
    assert list(frame["video"]) == paths and list(frame["ok"]) == [True, True, False]
    cli = pd.read_csv(cli_out / "videos.csv").set_index("video")
    for col in ("label", "num_windows", "windows_predicted", *PROBS):
        ours = frame.set_index("video").loc[paths[:2], col].tolist()
        assert ours == cli.loc[paths[:2], col].tolist(), col
    with pytest.raises(mlflow.exceptions.MlflowException, match="missing inputs \\['video'\\]"):
        model.predict(paths[:1])  # the signature asks for a 'video' column, and says so

    # the registry URI works as `avf predict --model`
    assert logged.source_run_id == run_file["run_id"]
    out_reg = tmp_path / "from-registry"
    _avf(workspace, "predict", paths[0], "--model", "models:/avf-predict-test@champion", "--out", str(out_reg))
    (rec,) = read_jsonl(out_reg / "videos.jsonl")
    assert rec["model"] == "models:/avf-predict-test@champion"
    assert [rec["probabilities"][c] for c in CLASSES] == frame[PROBS].iloc[0].tolist()


def test_cli_errors_are_one_line(workspace: dict[str, Path], tmp_path: Path) -> None:
    base = ["--params", str(workspace["root"] / "params.yaml"), "predict"]
    missing = invoke(*base, str(workspace["videos"]), "--model", str(tmp_path / "nope"), "--out", "o")
    assert missing.exit_code == 3 and "model not found" in missing.output
    empty = invoke(*base, str(tmp_path), "--model", str(workspace["model"]), "--out", "o")
    assert empty.exit_code == 3 and "no videos found" in empty.output
    both = invoke(*base, str(workspace["videos"]), "--model", "m", "--out", "o", "--ray", "--plot")
    assert both.exit_code == 2
    only_bad = tmp_path / "bad.mp4"
    shutil.copy(workspace["videos"] / "broken.mp4", only_bad)
    failed = invoke(*base, str(only_bad), "--model", str(workspace["model"]), "--out", str(tmp_path / "o"))
    assert failed.exit_code == 1 and "1 failed" in failed.output


# --------------------------------------------------------------------------------------------- Ray


@pytest.mark.slow
def test_ray_job_writes_the_same_predictions_as_parquet(workspace: dict[str, Path], cli_out: Path) -> None:
    import ray

    out = workspace["root"] / "out-ray"
    try:
        _avf(
            workspace,
            "predict",
            str(workspace["videos"]),
            "--model",
            str(workspace["model"]),
            "--out",
            str(out),
            "--ray",
        )
    finally:
        ray.shutdown()
    table = pd.read_parquet(out / "predictions.parquet").set_index("video_id").sort_index()
    cli = pd.read_csv(cli_out / "videos.csv").set_index("video_id").sort_index()
    assert list(table.index) == list(cli.index)
    assert table["ok"].tolist() == cli["ok"].tolist()
    np.testing.assert_allclose(table[PROBS].to_numpy(dtype=float), cli[PROBS].to_numpy(dtype=float), atol=1e-6)
    windows = table.loc["mute", "windows"]
    assert len(windows) == cli.loc["mute", "num_windows"] and all(w["audio"] == "missing" for w in windows)
