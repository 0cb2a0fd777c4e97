"""Adapter: the official AVF-MAE++ code (XuecWu/AVF-MAE) measured by the same harness as ours.

Nothing of the official code lives in this repository. Point ``--official-dir`` or ``AVF_OFFICIAL_DIR``
at a scratch checkout made outside it, e.g.::

    git clone https://github.com/XuecWu/AVF-MAE /tmp/official_avf && git -C /tmp/official_avf checkout a31ebf8

Commit ``a31ebf8`` is the original upload; HEAD lost three lines to comment stripping and does not run
(spec section 11.1). Without a directory every official case is skipped with a message.

**What runs.** The official training steps are the official engine functions themselves, fed one batch:
``engine_for_pretraining_av.train_one_epoch`` (targets, loss, HCMCL, ``NativeScalerWithGradNormCount``,
the grad-norm pass, AdamW from ``optim_factory.create_optimizer``) and ``engine_for_finetuning_av.
train_one_epoch`` (the official ``Mixup`` 0.8 / CutMix 1.0 with smoothing 0.1, ``SoftTargetCrossEntropy``,
layer decay 0.75 through ``LayerDecayValueAssignerForAudioVisual``). Inference is the official model's
forward on the 4 test views per clip (2 temporal x 2 spatial, ``final_test``'s batch), softmax averaged
per clip as their ``merge`` does. Models are built with the arguments of the official scripts (base:
depths 10/10, decoder 4, fusion 2, ``attn_type=local_global``, regions (2,5,10)/(4,4), region tokens for
classification, drop path 0 pretraining / 0.1 fine-tuning).

**Shims** (installed in ``sys.modules`` only while the official modules import, then removed; their
files are never edited; :data:`SHIMS` records them and the report prints them):

* ``timm.models.registry``: ``register_model`` as the identity (the module is deprecated in timm 1.0;
  this also keeps the official names out of timm's global registry);
* ``timm.models.layers``: ``drop_path``, ``to_2tuple``, ``trunc_normal_`` taken from ``timm.layers``
  (deprecated module path in timm 1.0);
* ``timm.optim.nadam`` / ``timm.optim.radam``: ``Nadam`` = ``timm.optim.NAdamLegacy`` and ``RAdam`` =
  ``timm.optim.RAdamLegacy`` (renamed in timm 1.0; ``optim_factory`` imports them at module level, AdamW
  is what runs).

Two run-time adaptations for a CPU without CUDA, applied around the official calls only: the engines'
``torch.cuda.synchronize()`` becomes a no-op when CUDA is unavailable, and the loss scaler's
``state_dict()`` reports ``{"scale": 1.0}`` when the (CUDA-only) GradScaler is disabled, because the
engines read ``state_dict()["scale"]`` every step. Their stdout (progress prints) is discarded.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import os
import sys
import types
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from avf.config.model import MaskingConfig
from avf.models.masking import Masks, sample_masks
from benchmarks.cases import NUM_CLASSES, clip_inputs
from benchmarks.harness import Runner

ENV = "AVF_OFFICIAL_DIR"
OFFICIAL_VIEWS = 4  # test_num_segment 2 x test_num_crop 2
MODULES = (
    "modeling_finetune_av",
    "modeling_pretrain_av",
    "modeling_attention_av",
    "engine_for_pretraining_av",
    "engine_for_finetuning_av",
    "optim_factory",
    "mixup",
    "utils",
)
SHIMS = [
    "timm.models.registry: register_model = identity (deprecated module in timm 1.0; keeps official names "
    "out of timm's registry)",
    "timm.models.layers: drop_path, to_2tuple, trunc_normal_ from timm.layers (deprecated module in timm 1.0)",
    "timm.optim.nadam / timm.optim.radam: Nadam = NAdamLegacy, RAdam = RAdamLegacy (renamed in timm 1.0; "
    "imported by optim_factory, unused: AdamW runs)",
    "run time, CPU only: torch.cuda.synchronize -> no-op; loss scaler state_dict() -> {'scale': 1.0} "
    "(the CUDA GradScaler is disabled on a CPU and returns {})",
]
# Official configuration per size: (pretrain factory, finetune factory, depth, skip layers).
CONFIGS = {
    "base": ("pretrain_hicmae_dim512_patch16_160_a256", "avit_dim512_patch16_160_a256", 10, (3, 6, 9)),
    "large": ("pretrain_hicmae_dim640_patch16_160_a256", "avit_dim640_patch16_160_a256", 12, (3, 7, 11)),
    "huge": ("pretrain_hicmae_dim768_patch16_160_a256", "avit_dim768_patch16_160_a256", 15, (4, 9, 14)),
}


def official_dir(arg: str | os.PathLike[str] | None = None) -> Path | None:
    """The checkout from ``arg`` or ``$AVF_OFFICIAL_DIR``; None when neither names an official checkout."""
    path = arg or os.environ.get(ENV)
    if not path:
        return None
    p = Path(path).expanduser()
    return p if (p / "modeling_pretrain_av.py").is_file() else None


def why_skipped(arg: str | os.PathLike[str] | None = None) -> str:
    path = arg or os.environ.get(ENV)
    if not path:
        return f"official code skipped: pass --official-dir or set {ENV} to a checkout of XuecWu/AVF-MAE (a31ebf8)"
    return f"official code skipped: {path} has no modeling_pretrain_av.py (a checkout of XuecWu/AVF-MAE a31ebf8?)"


def _shim_modules() -> dict[str, types.ModuleType]:
    import timm.layers
    import timm.optim

    registry = types.ModuleType("timm.models.registry")
    registry.register_model = lambda fn: fn  # type: ignore[attr-defined]
    layers = types.ModuleType("timm.models.layers")
    for name in ("drop_path", "to_2tuple", "trunc_normal_", "DropPath"):
        setattr(layers, name, getattr(timm.layers, name))
    nadam = types.ModuleType("timm.optim.nadam")
    nadam.Nadam = timm.optim.NAdamLegacy  # type: ignore[attr-defined]
    radam = types.ModuleType("timm.optim.radam")
    radam.RAdam = timm.optim.RAdamLegacy  # type: ignore[attr-defined]
    return {
        "timm.models.registry": registry,
        "timm.models.layers": layers,
        "timm.optim.nadam": nadam,
        "timm.optim.radam": radam,
    }


def load(path: Path) -> types.SimpleNamespace:
    """Import the official modules from ``path`` with the timm 1.0 shims; returns them by name."""
    shims = _shim_modules()
    saved = {name: sys.modules.get(name) for name in (*shims, *MODULES)}
    sys.modules.update(shims)
    sys.path.insert(0, str(path))
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            mods = {name: importlib.import_module(name) for name in MODULES}
    finally:
        sys.path.remove(str(path))
        for name, mod in saved.items():  # restore: the official modules keep their own references
            if mod is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = mod
    return types.SimpleNamespace(**mods, path=path)


@contextlib.contextmanager
def _cpu_adaptations() -> Iterator[None]:
    """No-op ``torch.cuda.synchronize`` without CUDA; the engines' prints discarded."""
    original = torch.cuda.synchronize
    if not torch.cuda.is_available():
        torch.cuda.synchronize = lambda *a, **k: None  # type: ignore[assignment]
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        torch.cuda.synchronize = original  # type: ignore[assignment]


def _scaler(off: types.SimpleNamespace) -> Any:
    class Scaler(off.utils.NativeScalerWithGradNormCount):  # type: ignore[name-defined,misc]
        def state_dict(self) -> dict[str, Any]:
            return super().state_dict() or {"scale": 1.0}

    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Scaler()


def _opt_args(lr: float, betas: tuple[float, float]) -> argparse.Namespace:
    return argparse.Namespace(opt="adamw", lr=lr, weight_decay=0.05, opt_eps=1e-8, opt_betas=list(betas), momentum=0.9)


def official_masks(batch: int, seed: int) -> Masks:
    """Tube 0.9 / random 0.8125 encoder masks and running-cell / random decoder masks (official layout)."""
    cfg = MaskingConfig(region_balanced=False)
    return sample_masks(batch, cfg, torch.Generator().manual_seed(seed))


def build_pretrain(off: types.SimpleNamespace, size: str) -> nn.Module:
    factory, _, depth, skips = CONFIGS[size]
    with contextlib.redirect_stdout(io.StringIO()):
        return getattr(off.modeling_pretrain_av, factory)(
            drop_path_rate=0.0,
            encoder_depth=depth,
            decoder_depth=4,
            encoder_depth_audio=depth,
            decoder_depth_audio=4,
            encoder_fusion_depth=2,
            inter_contrastive_temperature=0.07,
            return_intermediate_features=skips,
            attn_type="local_global",
            lg_region_size=(2, 5, 10),
            lg_region_size_audio=(4, 4),
        )


def build_finetune(off: types.SimpleNamespace, size: str, drop_path: float = 0.1) -> nn.Module:
    _, factory, depth, _ = CONFIGS[size]
    with contextlib.redirect_stdout(io.StringIO()):
        return getattr(off.modeling_finetune_av, factory)(
            num_classes=NUM_CLASSES,
            all_frames=16,
            tubelet_size=2,
            drop_rate=0.0,
            drop_path_rate=drop_path,
            attn_drop_rate=0.0,
            init_scale=0.001,
            attn_type="local_global",
            depth=depth,
            depth_audio=depth,
            fusion_depth=2,
            use_mean_pooling=False,
            lg_region_size=(2, 5, 10),
            lg_region_size_audio=(4, 4),
            lg_classify_token_type="region",
        )


def official_pretrain(off: types.SimpleNamespace, size: str, batch: int, device: torch.device) -> Runner:
    """One official pretraining step: ``engine_for_pretraining_av.train_one_epoch`` over one batch."""
    torch.manual_seed(0)
    model = build_pretrain(off, size).to(device).train()
    lr = 1.5e-4 * batch / 256
    with contextlib.redirect_stdout(io.StringIO()):
        opt = off.optim_factory.create_optimizer(_opt_args(lr, (0.9, 0.95)), model)
    scaler = _scaler(off)
    video, audio = clip_inputs(batch, device)
    state = {"step": 0}

    def batch_for_step() -> list[tuple[Tensor, ...]]:
        m = official_masks(batch, state["step"])
        return [(video, m.video_enc, m.video_dec, audio, m.audio_enc, m.audio_dec)]

    def step() -> None:
        with _cpu_adaptations():
            off.engine_for_pretraining_av.train_one_epoch(
                model, batch_for_step(), opt, device, 0, scaler, max_norm=None, patch_size=16,
                normlize_target=True, log_writer=None, lr_scheduler=None, start_steps=0,
                lr_schedule_values=[lr], wd_schedule_values=[0.05], loss_weight=0.0025,
                use_frame_diff_as_target=True,
            )  # fmt: skip
        state["step"] += 1

    def forward() -> Tensor:
        m = official_masks(batch, 0)
        out = model(video, m.video_enc, m.video_dec, audio, m.audio_enc, m.audio_dec)
        return out[0].float().mean() + out[1].float().mean()

    return Runner(f"official {size}", step, batch, device, model, opt, forward, {"model": CONFIGS[size][0]})


def official_finetune(off: types.SimpleNamespace, size: str, batch: int, device: torch.device) -> Runner:
    """One official fine-tuning step: ``engine_for_finetuning_av.train_one_epoch`` over one batch."""
    torch.manual_seed(0)
    model = build_finetune(off, size).to(device).train()
    lr = 1e-3 * batch / 256
    num_layers = model.get_num_layers()
    assigner = off.optim_factory.LayerDecayValueAssignerForAudioVisual(
        [0.75 ** (num_layers + 1 - i) for i in range(num_layers + 2)], model.get_num_modality_specific_layers()
    )
    with contextlib.redirect_stdout(io.StringIO()):
        opt = off.optim_factory.create_optimizer(
            _opt_args(lr, (0.9, 0.999)),
            model,
            skip_list=model.no_weight_decay(),
            get_num_layer=assigner.get_layer_id,
            get_layer_scale=assigner.get_scale,
        )
    mixup = off.mixup.Mixup(
        mixup_alpha=0.8, cutmix_alpha=1.0, prob=1.0, switch_prob=0.5, mode="batch", label_smoothing=0.1,
        num_classes=NUM_CLASSES,
    )  # fmt: skip
    from timm.loss import SoftTargetCrossEntropy

    criterion = SoftTargetCrossEntropy()
    scaler = _scaler(off)
    video, audio = clip_inputs(batch, device)
    labels = torch.arange(batch, device=device) % NUM_CLASSES

    def step() -> None:
        with _cpu_adaptations():
            off.engine_for_finetuning_av.train_one_epoch(
                model, criterion, [((video, audio), labels, None, None)], opt, device, 0, scaler, max_norm=None,
                model_ema=None, mixup_fn=mixup, log_writer=None, start_steps=0, lr_schedule_values=[lr],
                wd_schedule_values=[0.05], num_training_steps_per_epoch=1, update_freq=1,
            )  # fmt: skip

    def forward() -> Tensor:
        v, t = mixup(video, labels)
        return criterion(model(v, audio), t)

    return Runner(f"official {size}", step, batch, device, model, opt, forward, {"model": CONFIGS[size][1]})


def official_inference(off: types.SimpleNamespace, size: str, clips: int, device: torch.device) -> Runner:
    """The official test protocol: 4 views per clip (2 temporal x 2 identical spatial crops)."""
    torch.manual_seed(0)
    model = build_finetune(off, size).to(device).eval()
    video, audio = clip_inputs(clips * OFFICIAL_VIEWS, device)

    @torch.no_grad()
    def step() -> None:
        out = model(video, audio).float()
        out.softmax(-1).view(clips, OFFICIAL_VIEWS, -1).mean(1).cpu()

    return Runner(
        f"official {size} ({OFFICIAL_VIEWS} views)", step, clips, device, model, None, None, {"views": OFFICIAL_VIEWS}
    )


def forward_gflops_per_clip(off: types.SimpleNamespace, kind: str, size: str) -> float:
    """The official forward GFLOPs per clip (pretraining) or per view (fine-tuning), batch 2, on the CPU."""
    from torch.utils.flop_counter import FlopCounterMode

    b = 2
    video, audio = clip_inputs(b, torch.device("cpu"))
    model = (build_pretrain if kind == "pretrain" else partial(build_finetune, drop_path=0.0))(off, size).eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        if kind == "pretrain":
            m = official_masks(b, 0)
            model(video, m.video_enc, m.video_dec, audio, m.audio_enc, m.audio_dec)
        else:
            model(video, audio)
    return counter.get_total_flops() / 1e9 / b
