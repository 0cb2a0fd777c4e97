"""The CUDA paths (run by ``benchmarks/gpu_check.py`` where a GPU is lent; skipped without one).

Training steps of the real models in bf16 and in fp16 with a grad scaler, base size included; the
device option of prediction against the CPU result; native-bf16 detection; fp32 contrastive logits
under CUDA autocast; pretraining frames decoded by nvJPEG against the worker's.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from avf.config import Params
from avf.models.factory import finetune_model, pretrain_model
from avf.models.losses import contrastive_loss
from avf.models.masking import sample_masks
from avf.train.amp import autocast, grad_scaler, resolve_dtype
from avf.utils.device import resolve_device

pytestmark = pytest.mark.gpu

CUDA = torch.device("cuda")


def _inputs(b: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.randn(b, 3, 16, 160, 160, generator=g).to(CUDA), torch.randn(b, 1, 256, 128, generator=g).to(CUDA)


def test_auto_device_and_precision() -> None:
    assert resolve_device("auto") == CUDA
    native = torch.cuda.is_bf16_supported(including_emulation=False)
    assert resolve_dtype("auto", CUDA) == (torch.bfloat16 if native else torch.float16)


@pytest.mark.parametrize("size", ["tiny", "base"])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
def test_two_training_steps_per_stage(size: str, dtype: torch.dtype) -> None:
    p = Params.model_validate({"model": {"size": size}})
    video, audio = _inputs(4)
    scaler = grad_scaler(CUDA, dtype)
    ctx = autocast(CUDA, dtype)
    pre = pretrain_model(p.model, p.pretrain, p.masking).to(CUDA)
    fine = finetune_model(p.model, 7).to(CUDA)
    for model, step in ((pre, "pretrain"), (fine, "finetune")):
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
        for i in range(2):
            with ctx():
                if step == "pretrain":
                    masks = sample_masks(4, p.masking, torch.Generator().manual_seed(i))  # stay on the CPU
                    loss = model(video, audio, masks).loss
                else:
                    loss = F.cross_entropy(model(video, audio).float(), torch.arange(4, device=CUDA) % 7)
            (scaler.scale(loss) if scaler else loss).backward()
            if scaler:
                scaler.step(opt)
                scaler.update()
            else:
                opt.step()
            opt.zero_grad(set_to_none=True)
            assert torch.isfinite(loss), (step, i)
    del pre, fine
    torch.cuda.empty_cache()


def test_prediction_on_the_gpu_matches_the_cpu() -> None:
    from avf.config.predict import PredictConfig
    from avf.predict.predictor import Predictor
    from avf.predict.source import ModelSpec

    p = Params()
    model = finetune_model(p.model, 5, training=False).eval()
    spec = ModelSpec("test", "stage", "tiny", "classification", tuple("abcde"), p.data.face, p.data.clip, p.data.audio)
    g = torch.Generator().manual_seed(1)
    video, audio = torch.randn(2, 2, 3, 16, 160, 160, generator=g), torch.randn(2, 2, 1, 256, 128, generator=g)
    cpu = Predictor(model, spec, PredictConfig(device="cpu")).forward(video, audio)
    gpu = Predictor(model, spec, PredictConfig(device="cuda")).forward(video, audio)
    assert gpu.device.type == "cpu"  # scores come back to the host
    torch.testing.assert_close(gpu, cpu, atol=2e-3, rtol=0)


def test_contrastive_logits_stay_fp32_under_cuda_autocast() -> None:
    g = torch.Generator().manual_seed(0)
    z_v = F.normalize(torch.randn(64, 256, generator=g), dim=-1).to(CUDA)
    z_a = F.normalize(torch.randn(64, 256, generator=g), dim=-1).to(CUDA)
    exact = contrastive_loss(z_v, z_a)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        mixed = contrastive_loss(z_v, z_a)
    torch.testing.assert_close(mixed, exact, atol=1e-5, rtol=1e-5)


def test_frames_decoded_by_nvjpeg_match_the_workers(tmp_path: Path) -> None:
    from avf.config.data import AudioConfig, AugmentConfig, ClipConfig
    from avf.data.loader import ClipDataset, collate_clips
    from avf.data.transforms import decode_on_device
    from tests.support.shards import write_shards

    shards = write_shards(tmp_path / "faces", 4, per_shard=4, n_frames=70, faces=True)
    kw = {"train": True, "clip": ClipConfig(), "audio": AudioConfig(), "augment": AugmentConfig(), "pretrain": True}
    worker, device = ClipDataset(shards, **kw), ClipDataset(shards, **kw, decode=False)
    decoded = collate_clips([worker.item(k, 0) for k in worker.keys])
    undecoded = collate_clips([device.item(k, 0) for k in device.keys])
    frames, kept = decode_on_device(undecoded["jpeg"], undecoded["jpeg_sizes"], undecoded["crop"], 160, CUDA)
    assert kept == [0, 1, 2, 3] and frames.device.type == "cuda" and frames.dtype == torch.uint8
    diff = (frames.cpu().int() - decoded["video"].int()).abs()
    assert diff.float().mean() < 0.5 and diff.max() <= 8  # nvJPEG's IDCT and a float resize, not libjpeg's
