"""Device and precision choices that only show on a GPU, checked on the CPU: auto precision without
emulated bf16, fp32 contrastive logits under autocast, the device option of evaluation and prediction,
and in-process training on the GPU that ``ray.use_gpu`` asks for."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from avf.config import Params
from avf.models.losses import contrastive_loss
from avf.train.amp import resolve_dtype
from avf.utils.device import resolve_device


def test_auto_precision_takes_native_bf16_only(monkeypatch: pytest.MonkeyPatch) -> None:
    cuda = torch.device("cuda")

    def v100(including_emulation: bool = True) -> bool:  # torch counts emulated bf16 unless told not to
        return including_emulation

    monkeypatch.setattr(torch.cuda, "is_bf16_supported", v100)
    assert resolve_dtype("auto", cuda) == torch.float16  # fp16 + GradScaler, not emulated bf16
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: True)
    assert resolve_dtype("auto", cuda) == torch.bfloat16  # A100, H100: native


def test_auto_precision_on_a_cpu_takes_bf16_where_it_has_bf16_units(monkeypatch: pytest.MonkeyPatch) -> None:
    from avf.train import amp

    cpu = torch.device("cpu")
    monkeypatch.setattr(amp, "bf16_units", lambda: ())  # an AMD EPYC without AVX-512 BF16: emulated bf16
    assert resolve_dtype("auto", cpu) is None and resolve_dtype("bf16", cpu) == torch.bfloat16
    monkeypatch.setattr(amp, "bf16_units", lambda: ("amx_bf16", "avx512_bf16"))  # a Xeon with AMX
    assert resolve_dtype("auto", cpu) == torch.bfloat16
    assert resolve_dtype("off", cpu) is None and resolve_dtype("fp16", cpu) is None


def test_contrastive_logits_are_fp32_under_autocast() -> None:
    g = torch.Generator().manual_seed(0)
    z_v = F.normalize(torch.randn(8, 64, generator=g), dim=-1)
    z_a = F.normalize(torch.randn(8, 64, generator=g), dim=-1)
    exact = contrastive_loss(z_v, z_a, temperature=0.07)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = contrastive_loss(z_v, z_a, temperature=0.07)
    assert mixed.dtype == torch.float32 and torch.equal(mixed, exact)  # bf16 matmuls would move it


def test_device_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    assert resolve_device("auto") == torch.device("cpu") and resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(ValueError, match="this machine has 0 CUDA GPU"):
        resolve_device("cuda:1")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device("auto") == torch.device("cuda") and resolve_device("cuda:1") == torch.device("cuda:1")


def test_params_validate_the_device_option() -> None:
    assert Params.model_validate({"eval": {"device": "cuda:0"}}).eval.device == "cuda:0"
    with pytest.raises(ValueError, match="device"):
        Params.model_validate({"predict": {"device": "gpu"}})


def test_in_process_training_follows_ray_use_gpu(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from avf.config import RayConfig
    from avf.train import launch
    from tests.support.toy_task import toy_config

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    with pytest.raises(ValueError, match="0 CUDA GPU"):  # asked for a GPU: never a silent CPU run
        launch.run(toy_config(epochs=1), RayConfig(num_workers=0, use_gpu=True), "gpu", tmp_path)
    result = launch.run(toy_config(epochs=1), RayConfig(num_workers=0, use_gpu=False), "cpu", tmp_path)
    assert result.checkpoint.is_dir()
