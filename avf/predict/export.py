"""``avf export``: a self-contained model package folder, and ONNX for the fine-tuning forward.

Package layout (loadable by :class:`avf.predict.Predictor` and ``avf predict --model DIR``)::

    DIR/config.json         format, avf version, architecture, task, class / target names,
                            preprocessing (data.face / data.clip / data.audio), input shapes, provenance
    DIR/model.safetensors   the weights (our parameter names)
    DIR/assets/*.tflite     the face detector (and landmark model when ``align``) the crops need
    DIR/model.onnx          with ``onnx=True``: ``logits = f(video, audio)``, dynamic batch

The ONNX graph is the fine-tuning forward ``video f32 [B, 3, T, S, S], audio f32 [B, 1, F, M] ->
logits f32 [B, K]`` (no softmax, no view averaging: those stay in the caller), exported with
PyTorch's TorchScript-based exporter (opset 17), which needs no extra dependency.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from avf import __version__
from avf.artifacts.weights import save_weights, state_dict_tensors
from avf.assets import locate as locate_asset
from avf.predict.source import PACKAGE_CONFIG, PACKAGE_FORMAT, ModelSpec
from avf.utils.io import atomic_path

__all__ = ["ONNX_OPSET", "check_onnx", "example_inputs", "export_onnx", "export_package", "onnx_session"]

ONNX_OPSET = 17
FORMAT_VERSION = 1


def example_inputs(spec: ModelSpec, batch: int = 1, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Random ``video [B, 3, T, S, S]`` and ``audio [B, 1, F, M]`` of the model's input geometry."""
    g = torch.Generator().manual_seed(seed)
    c, a = spec.clip, spec.audio
    video = torch.randn(batch, 3, c.num_frames, c.image_size, c.image_size, generator=g)
    audio = torch.randn(batch, 1, a.target_frames, a.num_mel_bins, generator=g)
    return video, audio


def export_onnx(model: nn.Module, spec: ModelSpec, path: str | Path) -> Path:
    """Write ``model`` (fine-tuning forward, eval mode) as ONNX with a dynamic batch axis."""
    path = Path(path)
    model = model.eval()
    with atomic_path(path, suffix=".onnx") as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about shape-dependent Python branches
        torch.onnx.export(
            model,
            example_inputs(spec, batch=2),
            str(tmp),
            input_names=["video", "audio"],
            output_names=["logits"],
            dynamic_axes={"video": {0: "batch"}, "audio": {0: "batch"}, "logits": {0: "batch"}},
            opset_version=ONNX_OPSET,
            dynamo=False,
        )
    return path


def onnx_session(model: nn.Module, spec: ModelSpec, threads: int | None = None) -> Any:
    """``model`` exported to ONNX (a temporary file) and loaded in an ONNX Runtime session on the CPU, with
    ``threads`` intra-op threads (None: ONNX Runtime's default)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    with tempfile.TemporaryDirectory(prefix="avf-onnx-") as tmp:
        path = export_onnx(model, spec, Path(tmp) / "model.onnx")
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def check_onnx(model: nn.Module, spec: ModelSpec, path: str | Path, batch: int = 2, seed: int = 1) -> float:
    """Max absolute difference between onnxruntime's and PyTorch's logits on random inputs."""
    import onnxruntime as ort

    video, audio = example_inputs(spec, batch=batch, seed=seed)
    with torch.inference_mode():
        ref = model.eval()(video, audio).float().numpy()
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (out,) = session.run(["logits"], {"video": video.numpy(), "audio": audio.numpy()})
    return float(np.abs(out - ref).max())


def _package_config(spec: ModelSpec, assets: dict[str, str], onnx: str | None) -> dict[str, Any]:
    pre = spec.preprocessing()
    pre["face"].update(assets)
    c, a = spec.clip, spec.audio
    return {
        "format": PACKAGE_FORMAT,
        "format_version": FORMAT_VERSION,
        "avf_version": __version__,
        "model": {**spec.architecture, "size": spec.size, "num_outputs": spec.num_outputs},
        "task": spec.task,
        "dataset": spec.dataset,
        "classes": list(spec.outputs) if spec.task == "classification" else [],
        "targets": list(spec.outputs) if spec.task == "regression" else [],
        "preprocessing": pre,
        "inputs": {
            "video": ["batch", 3, c.num_frames, c.image_size, c.image_size],
            "audio": ["batch", 1, a.target_frames, a.num_mel_bins],
            "output": ["batch", spec.num_outputs],
            "note": "video: ImageNet-normalised face crops; audio: normalised Kaldi fbank; output: logits",
        },
        "files": {"weights": "model.safetensors", "onnx": onnx},
        "provenance": {"source": spec.source, "source_format": spec.format, **spec.provenance},
    }


def export_package(model: nn.Module, spec: ModelSpec, out_dir: str | Path, onnx: bool = False) -> dict[str, Any]:
    """Write the package folder (see the module docstring) atomically; returns its ``config.json``.

    With ``onnx`` the ONNX file is also written and checked against PyTorch (``onnx_max_abs_diff``).
    The export runs on the CPU, wherever ``model`` was.
    """
    model = model.cpu()
    out_dir = Path(out_dir)
    face = spec.face
    wanted = {"detector_model": face.detector_model} | ({"landmark_model": face.landmark_model} if face.align else {})
    with atomic_path(out_dir) as tmp:
        (tmp / "assets").mkdir(parents=True)
        assets = {}
        for key, rel in wanted.items():
            src = locate_asset(rel, spec.base_dir)
            if not src.is_file():
                raise FileNotFoundError(f"face model {rel} not found (run `make setup`): the package needs it")
            shutil.copy2(src, tmp / "assets" / src.name)
            assets[key] = f"assets/{src.name}"
        save_weights(tmp / "model.safetensors", state_dict_tensors(model), metadata={"format": "pt"})
        config = _package_config(spec, assets, "model.onnx" if onnx else None)
        if onnx:
            export_onnx(model, spec, tmp / "model.onnx")
            config["onnx_max_abs_diff"] = check_onnx(model, spec, tmp / "model.onnx")
        (tmp / PACKAGE_CONFIG).write_text(json.dumps(config, indent=2) + "\n")
        for f in tmp.rglob("*"):  # shareable: temp files are created owner-only
            f.chmod(0o755 if f.is_dir() else 0o644)
    return config
