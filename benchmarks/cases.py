"""Benchmark cases built on our code: AVF-MAE++ pretraining / fine-tuning / inference steps, and the plain
timm ViT stacks with the same token counts and widths ("raw compute" references).

Each step is what the training loop (``avf/train/loop.py`` + ``avf/train/tasks.py``) does per optimizer
step: masks drawn per step, forward, loss, backward, AdamW from ``avf.train.optim.build_optimizer``,
``zero_grad(set_to_none=True)``, and the ``float(loss)`` the loop logs.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from avf.config.model import MaskingConfig
from avf.config.train import FinetuneConfig, PretrainConfig
from avf.models import SIZES, create_model, model_name
from avf.models.masking import sample_masks
from avf.models.packed_linear import packed_linears
from avf.models.summary import count_flops, forward_flops
from avf.train.amp import autocast
from avf.train.objectives import AVMixup, classification_loss
from avf.train.optim import build_optimizer
from benchmarks.harness import Runner

NUM_CLASSES = 11  # MAFW
TEST_VIEWS = 2  # ours: 2 temporal views x 1 crop (the official protocol computes 2 x 2)
NUM_VIDEO_TOKENS, NUM_AUDIO_TOKENS = 800, 128


def clip_inputs(batch: int, device: torch.device, seed: int = 0) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(seed)
    video = torch.randn(batch, 3, 16, 160, 160, generator=g)
    audio = torch.randn(batch, 1, 256, 128, generator=g)
    return video.to(device), audio.to(device)


def amp_for(device: torch.device, bf16: bool) -> Any:
    return autocast(device, torch.bfloat16 if bf16 else None)


def maybe_compile(model: nn.Module, enabled: bool) -> nn.Module:
    """``torch.compile`` the model when asked (the same switch as ``model.compile``), eager on failure."""
    if not enabled:
        return model
    from avf.models.compile import compile_model

    return compile_model(model)


def ours_pretrain(size: str, batch: int, device: torch.device, bf16: bool = False, **model_kw: Any) -> Runner:
    """One pretraining optimizer step of ``avf_mae_pp_pretrain_<size>``."""
    compile_ = bool(model_kw.pop("compile", False))
    torch.manual_seed(0)
    model = create_model(model_name("pretrain", size), **model_kw).to(device).train()
    cfg = PretrainConfig(batch_size=batch)
    opt = build_optimizer(model, cfg, batch)
    fwd_model = maybe_compile(model, compile_)
    video, audio = clip_inputs(batch, device)
    amp = amp_for(device, bf16)
    state = {"step": 0}

    def forward() -> Tensor:
        gen = torch.Generator().manual_seed(state["step"])
        masks = sample_masks(batch, MaskingConfig(), gen).to(device)
        with amp():
            return fwd_model(video, audio, masks).loss

    def step() -> None:
        loss = forward()
        float(loss.detach())
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        state["step"] += 1

    return Runner(f"ours {size}", step, batch, device, model, opt, forward, {"model": model_name("pretrain", size)})


def ours_finetune(size: str, batch: int, device: torch.device, bf16: bool = False, **model_kw: Any) -> Runner:
    """One fine-tuning optimizer step (one view per clip, mixup 0.8 / cutmix 1.0, smoothing 0.1,
    layer decay 0.75) of ``avf_mae_pp_<size>``."""
    compile_ = bool(model_kw.pop("compile", False))
    torch.manual_seed(0)
    model = create_model(model_name("finetune", size), num_classes=NUM_CLASSES, **model_kw).to(device).train()
    cfg = FinetuneConfig(batch_size=batch, mixup=0.8, cutmix=1.0)
    opt = build_optimizer(model, cfg, batch, cfg.layer_decay)
    fwd_model = maybe_compile(model, compile_)
    video, audio = clip_inputs(batch, device)
    labels = torch.arange(batch, device=device) % NUM_CLASSES
    mixup = AVMixup(cfg.mixup, cfg.cutmix, NUM_CLASSES, cfg.label_smoothing, mix_audio=cfg.mixup_audio)
    amp = amp_for(device, bf16)
    state = {"step": 0}

    def forward() -> Tensor:
        v, a, target = mixup(video, audio, labels, np.random.default_rng(state["step"]))
        with amp():
            logits = fwd_model(v, a)
            return classification_loss(logits.float(), target, cfg.label_smoothing)

    def step() -> None:
        loss = forward()
        float(loss.detach())
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        state["step"] += 1

    return Runner(f"ours {size}", step, batch, device, model, opt, forward, {"model": model_name("finetune", size)})


def ours_inference(
    size: str, clips: int, device: torch.device, bf16: bool = False, views: int = TEST_VIEWS, **model_kw: Any
) -> Runner:
    """Test protocol: ``views`` views per clip in one batch, softmax averaged per clip (``predict_views``)."""
    compile_ = bool(model_kw.pop("compile", False))
    torch.manual_seed(0)
    model = create_model(model_name("finetune", size), num_classes=NUM_CLASSES, **model_kw).to(device).eval()
    fwd_model = maybe_compile(model, compile_)
    video, audio = clip_inputs(clips * views, device)
    amp = amp_for(device, bf16)
    packed = packed_linears(fwd_model)  # as avf.predict.Predictor and avf.eval run it

    @torch.inference_mode()
    def step() -> None:
        with amp(), packed:
            out = fwd_model(video, audio).float()
        out.softmax(-1).view(clips, views, -1).mean(1).cpu()

    return Runner(f"ours {size} ({views} views)", step, clips, device, model, None, None, {"views": views})


def ours_inference_onnx(size: str, clips: int, device: torch.device, views: int = TEST_VIEWS) -> Runner:
    """:func:`ours_inference` through ONNX Runtime on the CPU (what ``avf predict --runtime onnxruntime`` runs):
    the same weights in ``avf.predict.export.onnx_session``, as many intra-op threads as torch."""
    from avf.config.data import AudioConfig, ClipConfig, FaceConfig
    from avf.predict.export import onnx_session
    from avf.predict.source import ModelSpec

    torch.manual_seed(0)
    model = create_model(model_name("finetune", size), num_classes=NUM_CLASSES).eval()
    video, audio = clip_inputs(clips * views, torch.device("cpu"))  # the geometry of ClipConfig / AudioConfig
    classes = tuple(str(i) for i in range(NUM_CLASSES))
    spec = ModelSpec(
        "benchmark", "safetensors", size, "classification", classes, FaceConfig(), ClipConfig(), AudioConfig()
    )
    session = onnx_session(model, spec, threads=torch.get_num_threads())
    inputs = {"video": video.numpy(), "audio": audio.numpy()}

    def step() -> None:
        (logits,) = session.run(["logits"], inputs)
        torch.from_numpy(logits).softmax(-1).view(clips, views, -1).mean(1)

    return Runner(f"ours {size} ONNX Runtime ({views} views)", step, clips, device, model, None, None, {"views": views})


# ---- plain timm ViT stacks --------------------------------------------------------------------------


def _stack(depth: int, dim: int, heads: int) -> nn.Sequential:
    from timm.models.vision_transformer import Block

    return nn.Sequential(*(Block(dim, heads, qkv_bias=True) for _ in range(depth)))


class PlainPretrain(nn.Module):
    """timm ViT blocks with the token counts and widths of one AVF-MAE++ pretraining step: encoders over
    the visible tokens + 8 region tokens, fusion blocks over the visible tokens, decoders over the visible
    + decoded tokens, same patch embeddings and heads (each LG block counted as one ViT block)."""

    def __init__(self, size: str, nv: int = 80, na: int = 24, dv: int = 400, da: int = 64) -> None:
        super().__init__()
        s = SIZES[size]
        self.n = (nv, na, dv, da)
        self.embed_v, self.embed_a = nn.Linear(1536, s.dim), nn.Linear(256, s.dim)
        self.region = nn.Parameter(torch.zeros(1, 8, s.dim))
        self.enc_v, self.enc_a = _stack(s.depth, s.dim, s.num_heads), _stack(s.depth, s.dim, s.num_heads)
        self.fuse_v, self.fuse_a = (
            _stack(s.fusion_depth, s.dim, s.num_heads),
            _stack(s.fusion_depth, s.dim, s.num_heads),
        )
        self.e2d_v, self.e2d_a = nn.Linear(s.dim, s.decoder_dim), nn.Linear(s.dim, s.decoder_dim)
        self.dec_v = _stack(s.decoder_depth, s.decoder_dim, s.decoder_heads)
        self.dec_a = _stack(s.decoder_depth, s.decoder_dim, s.decoder_heads)
        self.head_v, self.head_a = nn.Linear(s.decoder_dim, 1536), nn.Linear(s.decoder_dim, 256)

    def _branch(self, x: Tensor, embed: nn.Module, enc: nn.Module, fuse: nn.Module, e2d: nn.Module,
                dec: nn.Module, head: nn.Module, n_dec: int) -> Tensor:  # fmt: skip
        b = x.shape[0]
        h = enc(torch.cat((self.region.expand(b, -1, -1), embed(x)), dim=1))[:, self.region.shape[1] :]
        h = e2d(fuse(h))
        h = dec(torch.cat((h, h.new_zeros(b, n_dec, h.shape[-1])), dim=1))
        return head(h[:, -n_dec:])

    def forward(self, patches_v: Tensor, patches_a: Tensor) -> Tensor:
        _, _, dv, da = self.n
        pv = self._branch(patches_v, self.embed_v, self.enc_v, self.fuse_v, self.e2d_v, self.dec_v, self.head_v, dv)
        pa = self._branch(patches_a, self.embed_a, self.enc_a, self.fuse_a, self.e2d_a, self.dec_a, self.head_a, da)
        return pv.float().pow(2).mean() + pa.float().pow(2).mean()


class PlainFinetune(nn.Module):
    """timm ViT encoders over every token (800 video + 8, 128 audio + 8), fusion blocks over the 8 + 8
    region tokens, pooled linear head: the token counts and widths of the fine-tuning model."""

    def __init__(self, size: str) -> None:
        super().__init__()
        s = SIZES[size]
        self.embed_v, self.embed_a = nn.Linear(1536, s.dim), nn.Linear(256, s.dim)
        self.region = nn.Parameter(torch.zeros(1, 8, s.dim))
        self.enc_v, self.enc_a = _stack(s.depth, s.dim, s.num_heads), _stack(s.depth, s.dim, s.num_heads)
        self.fuse = _stack(s.fusion_depth, s.dim, s.num_heads)
        self.head = nn.Linear(2 * s.dim, NUM_CLASSES)

    def forward(self, patches_v: Tensor, patches_a: Tensor) -> Tensor:
        b = patches_v.shape[0]
        r = self.region.expand(b, -1, -1)
        v = self.enc_v(torch.cat((r, self.embed_v(patches_v)), dim=1))[:, :8]
        a = self.enc_a(torch.cat((r, self.embed_a(patches_a)), dim=1))[:, :8]
        f = self.fuse(torch.cat((v, a), dim=1))
        return self.head(torch.cat((f[:, :8].mean(1), f[:, 8:].mean(1)), dim=-1))


def plain_pretrain(size: str, batch: int, device: torch.device, bf16: bool = False) -> Runner:
    torch.manual_seed(0)
    model = PlainPretrain(size).to(device).train()
    opt = build_optimizer(model, PretrainConfig(batch_size=batch), batch)
    pv, pa = torch.randn(batch, 80, 1536, device=device), torch.randn(batch, 24, 256, device=device)
    amp = amp_for(device, bf16)

    def forward() -> Tensor:
        with amp():
            return model(pv, pa)

    def step() -> None:
        loss = forward()
        float(loss.detach())
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    return Runner(f"plain ViT {size}", step, batch, device, model, opt, forward)


def plain_finetune(size: str, batch: int, device: torch.device, bf16: bool = False) -> Runner:
    torch.manual_seed(0)
    model = PlainFinetune(size).to(device).train()
    opt = build_optimizer(model, FinetuneConfig(batch_size=batch), batch)
    pv = torch.randn(batch, NUM_VIDEO_TOKENS, 1536, device=device)
    pa = torch.randn(batch, NUM_AUDIO_TOKENS, 256, device=device)
    labels = torch.arange(batch, device=device) % NUM_CLASSES
    amp = amp_for(device, bf16)

    def forward() -> Tensor:
        with amp():
            return nn.functional.cross_entropy(model(pv, pa).float(), labels, label_smoothing=0.1)

    def step() -> None:
        loss = forward()
        float(loss.detach())
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    return Runner(f"plain ViT {size}", step, batch, device, model, opt, forward)


def plain_inference(size: str, clips: int, device: torch.device, bf16: bool = False, views: int = TEST_VIEWS) -> Runner:
    torch.manual_seed(0)
    model = PlainFinetune(size).to(device).eval()
    pv = torch.randn(clips * views, NUM_VIDEO_TOKENS, 1536, device=device)
    pa = torch.randn(clips * views, NUM_AUDIO_TOKENS, 256, device=device)
    amp = amp_for(device, bf16)

    @torch.inference_mode()
    def step() -> None:
        with amp():
            model(pv, pa).float().softmax(-1).view(clips, views, -1).mean(1).cpu()

    return Runner(f"plain ViT {size} ({views} views)", step, clips, device, model, None, None, {"views": views})


# ---- FLOPs ---------------------------------------------------------------------------------------


def forward_gflops_per_clip(kind: str, size: str, executed: bool = False) -> float:
    """Forward GFLOPs per clip (per view for fine-tuning) counted on the meta device by
    :func:`avf.models.summary.count_flops`: of the model as defined, or with ``executed`` those an inference
    forward runs (the folded graph)."""
    meta = torch.device("meta")
    b = 2
    if kind in ("pretrain", "finetune"):
        with meta:
            model = create_model(model_name(kind, size), **({"num_classes": NUM_CLASSES} if kind == "finetune" else {}))
        return forward_flops(model, b, executed) / 1e9 / b
    with meta:
        plain: nn.Module = PlainPretrain(size) if kind == "plain_pretrain" else PlainFinetune(size)
    tokens = ((80, 1536), (24, 256)) if kind == "plain_pretrain" else ((800, 1536), (128, 256))
    inputs = [torch.zeros(b, *shape, device=meta) for shape in tokens]
    return count_flops(lambda: plain(*inputs), executed) / 1e9 / b
