"""AVF-MAE++ model family: registration, exact sizes, blocks, forward/backward, layer decay, init."""

from __future__ import annotations

import importlib.util
import math
from collections.abc import Callable
from pathlib import Path

import pytest
import timm
import torch
import torch.nn.functional as F
from timm.optim import create_optimizer_v2
from torch import nn

from avf.config.model import MaskingConfig
from avf.models import AVFMAEPretrain, AVFViT, create_model, init_finetune_from_pretrain, model_name
from avf.models.layers import Attention, CrossAttention, gather_video_patches
from avf.models.lg_block import LGBlock
from avf.models.masking import Masks, sample_masks

ROOT = Path(__file__).resolve().parents[2]
B = 2
NAMES = [model_name(kind, size) for kind in ("pretrain", "finetune") for size in ("tiny", "base", "large", "huge")]


@pytest.fixture(scope="module")
def inputs() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.randn(B, 3, 16, 160, 160, generator=g), torch.randn(B, 1, 256, 128, generator=g)


@pytest.fixture(scope="module")
def masks() -> Masks:
    return sample_masks(B, MaskingConfig(), torch.Generator().manual_seed(0))


def _count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_every_name_is_registered_and_builds() -> None:
    assert sorted(timm.list_models("avf_mae_pp_*")) == sorted(NAMES)
    for name in NAMES:  # the large sizes are built by test_exact_parameter_counts
        if name.endswith("_tiny"):
            model = timm.create_model(name)
            assert isinstance(model, AVFMAEPretrain if "pretrain" in name else AVFViT)
            assert model.pretrained_cfg["architecture"] == name
    with pytest.raises(ValueError, match="no hosted weights"):
        create_model("avf_mae_pp_base", pretrained=True)
    with pytest.raises(ValueError, match="not an AVF-MAE"):
        create_model("vit_base_patch16_224")


@pytest.mark.parametrize(
    ("name", "num_classes", "expected"),
    [
        ("avf_mae_pp_pretrain_base", None, 187_942_660),
        ("avf_mae_pp_pretrain_large", None, 336_322_308),
        ("avf_mae_pp_pretrain_huge", None, 572_665_092),
        ("avf_mae_pp_base", 11, 169_122_851),
        ("avf_mae_pp_large", 11, 303_233_319),
        ("avf_mae_pp_huge", 11, 521_309_229),
    ],
)
def test_exact_parameter_counts(name: str, num_classes: int | None, expected: int) -> None:
    kwargs = {} if num_classes is None else {"num_classes": num_classes}
    with torch.device("meta"):
        model = create_model(name, **kwargs)
        assert _count(model) == expected
        if name == "avf_mae_pp_huge":
            model.reset_classifier(4)  # MSP-IMPROV, matches the official log
            assert _count(model) == 521_298_470


def test_module_parameter_formulas() -> None:
    c = 64
    assert _count(Attention(c, 4)) == _count(CrossAttention(c, 4)) == 4 * c * c + 3 * c
    assert _count(LGBlock(c, 4)) == 24 * c * c + 31 * c
    assert _count(LGBlock(c, 4, fourth_attn=False)) == 20 * c * c + 24 * c
    with torch.device("meta"):
        model = create_model("avf_mae_pp_base", num_classes=11)
    assert _count(model.fusion) == 160 * 512**2 + 178 * 512 + 4


def test_attention_qv_bias_no_k_bias() -> None:
    torch.manual_seed(0)
    attn = Attention(8, 2)
    with torch.no_grad():
        attn.q_bias.normal_()
        attn.v_bias.normal_()
    x, ctx = torch.randn(3, 5, 8), torch.randn(3, 7, 8)
    q, k, v = (x @ w.t() for w in attn.qkv.weight.chunk(3))
    q, v = q + attn.q_bias, v + attn.v_bias
    split = [t.view(3, 5, 2, 4).transpose(1, 2) for t in (q, k, v)]
    weights = (split[0] @ split[1].transpose(-1, -2) / 2.0).softmax(-1)
    ref = attn.proj((weights @ split[2]).transpose(1, 2).reshape(3, 5, 8))
    torch.testing.assert_close(attn(x), ref, rtol=1e-5, atol=1e-5)
    cross = CrossAttention(8, 2)
    k2, v2 = (ctx @ w.t() for w in cross.kv.weight.chunk(2))
    q2 = x @ cross.q.weight.t() + cross.q_bias
    sq, sk, sv = (t.view(3, -1, 2, 4).transpose(1, 2) for t in (q2, k2, v2 + cross.v_bias))
    ref2 = cross.proj(((sq @ sk.transpose(-1, -2) / 2.0).softmax(-1) @ sv).transpose(1, 2).reshape(3, 5, 8))
    torch.testing.assert_close(cross(x, ctx), ref2, rtol=1e-5, atol=1e-5)


def _folded_case(
    few: str, per_region: int = 8, regions: int = 3
) -> tuple[CrossAttention, nn.LayerNorm, nn.LayerNorm, torch.Tensor, torch.Tensor]:
    """A 4-head cross-attention with random parameters (a non-zero key bias too) and its two inputs: for
    ``few`` queries ``x [2, 2, 16]`` over ``context [2, regions * per_region, 16]``; for few keys, queries ``x
    [2, regions, per_region, 16]`` (a strided view, as the LG block's local tokens) over ``context [2, 2,
    16]``. It folds from 16 many-side tokens (``FOLD_MIN_RATIO * 4 heads * 2``)."""
    g = torch.Generator().manual_seed(0)
    cross, norm, ctx_norm = CrossAttention(16, 4), nn.LayerNorm(16, eps=1e-6), nn.LayerNorm(16, eps=1e-6)
    with torch.no_grad():
        for p in [*cross.parameters(), *norm.parameters(), *ctx_norm.parameters(), cross.k_bias]:
            p.copy_(torch.randn(p.shape, generator=g) * 0.5)
    many = torch.randn(2, regions, 1 + per_region, 16, generator=g)[:, :, 1:].requires_grad_()
    some = torch.randn(2, 2, 16, generator=g, requires_grad=True)
    if few == "queries":
        return cross, norm, ctx_norm, some, many.detach().reshape(2, -1, 16).requires_grad_()
    return cross, norm, ctx_norm, many, some


@pytest.mark.parametrize("few", ["queries", "keys"])
def test_folded_cross_attention_matches_the_projected_one(few: str) -> None:
    cross, norm, ctx_norm, x, ctx = _folded_case(few)
    folded = cross.forward_few_queries if few == "queries" else cross.forward_few_keys
    params = [x, ctx, *cross.parameters(), *norm.parameters(), *ctx_norm.parameters()]
    grad_out = torch.randn(2, x[0].numel() // 16, 16, generator=torch.Generator().manual_seed(1))
    results = []
    for run in (lambda: cross(x.reshape(2, -1, 16), ctx, norm, ctx_norm), lambda: folded(x, ctx, norm, ctx_norm)):
        out = run()
        grads = torch.autograd.grad(out, params, grad_out)
        results.append((out.detach(), grads))
    (ref, ref_grads), (got, got_grads) = results
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5)
    for a, b in zip(got_grads, ref_grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    with torch.no_grad():
        torch.testing.assert_close(folded(x, ctx, norm, ctx_norm), got, rtol=1e-6, atol=1e-6)
    assert not torch.equal(got, ref)  # the folded path ran: other float rounding


@pytest.mark.parametrize("few", ["queries", "keys"])
def test_cross_attention_projects_as_usual_below_the_fold_ratio(few: str) -> None:
    cross, norm, ctx_norm, x, ctx = _folded_case(few, per_region=5)  # 15 many-side tokens: below 16
    folded = cross.forward_few_queries if few == "queries" else cross.forward_few_keys
    assert torch.equal(folded(x, ctx, norm, ctx_norm), cross(x.reshape(2, -1, 16), ctx, norm, ctx_norm))
    cross, norm, ctx_norm, x, ctx = _folded_case(few, per_region=8, regions=2)  # exactly 16: folded
    folded = cross.forward_few_queries if few == "queries" else cross.forward_few_keys
    got, ref = folded(x, ctx, norm, ctx_norm), cross(x.reshape(2, -1, 16), ctx, norm, ctx_norm)
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5)
    assert not torch.equal(got, ref)


def test_flop_counts_are_the_model_as_defined_not_the_folded_execution() -> None:
    from torch.utils.flop_counter import FlopCounterMode

    from avf.models.layers import fused_ops
    from avf.models.summary import forward_flops
    from benchmarks.cases import forward_gflops_per_clip

    with torch.device("meta"):
        model = create_model("avf_mae_pp_tiny", num_classes=7).eval()
        video, audio = torch.zeros(1, 3, 16, 160, 160), torch.zeros(1, 1, 256, 128)
    counts = {}
    for fused in (False, True):
        with FlopCounterMode(display=False) as counter, torch.no_grad(), fused_ops(fused):
            model(video, audio)
        counts[fused] = counter.get_total_flops()
    assert counts[True] < 0.95 * counts[False]  # the tiny model folds every LG block when fine-tuning
    assert forward_flops(model) == counts[False]
    assert forward_flops(model, executed=True) == counts[True]
    for executed in (False, True):  # the benchmarks count with the same function, at batch 2
        gflops = forward_gflops_per_clip("finetune", "tiny", executed=executed)
        assert gflops * 1e9 == pytest.approx(counts[executed], rel=1e-4)


@pytest.mark.parametrize("few", ["queries", "keys"])
def test_folded_cross_attention_saves_nothing_of_the_many_tokens_size(few: str) -> None:
    cross, norm, ctx_norm, x, ctx = _folded_case(few, per_region=128)
    many = ctx if few == "queries" else x
    inputs = {t.untyped_storage().data_ptr() for t in (x, ctx, *cross.parameters(), *norm.parameters())}

    def saved_bytes(run: Callable[[], torch.Tensor]) -> int:
        storages: dict[int, int] = {}

        def pack(t: torch.Tensor) -> torch.Tensor:
            st = t.untyped_storage()
            if st.data_ptr() not in inputs:
                storages[st.data_ptr()] = st.nbytes()
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            run()
        return sum(storages.values())

    size = many.numel() * 4
    projected = saved_bytes(lambda: cross(x.reshape(2, -1, 16), ctx, norm, ctx_norm))
    folded = cross.forward_few_queries if few == "queries" else cross.forward_few_keys
    kept = saved_bytes(lambda: folded(x, ctx, norm, ctx_norm))
    # projected: keys and values of the many tokens (few queries), or their queries and the output (few keys)
    assert projected >= 2 * size, (projected, size)
    # folded: nothing (few queries) or the output that the projection after the attention needs (few keys)
    assert kept <= (0.15 if few == "queries" else 1.15) * size, (kept, size)


@pytest.mark.parametrize("fourth", [True, False])
def test_lg_block_matches_a_per_region_reference(fourth: bool) -> None:
    torch.manual_seed(0)
    blk = LGBlock(16, 2, fourth_attn=fourth).eval()
    x = torch.randn(2, 4, 6, 16)  # B=2, K=4 regions of 1 region token + 5 local tokens
    out = blk(x)
    for b in range(2):
        seqs = [x[b, k] for k in range(4)]
        seqs = [s + blk.intra_attn(blk.intra_norm(s)[None])[0] for s in seqs]
        regions = torch.stack([s[0] for s in seqs])
        regions = regions + blk.inter_attn(blk.inter_norm(regions)[None])[0]
        local = torch.cat([s[1:] for s in seqs])
        local = local + blk.local_attn(blk.local_norm(local)[None], blk.local_ctx_norm(regions)[None])[0]
        if fourth:
            regions = regions + blk.region_attn(blk.region_norm(regions)[None], blk.region_ctx_norm(local)[None])[0]
        for k in range(4):
            seq = torch.cat([regions[k : k + 1], local[5 * k : 5 * k + 5]])
            ref = seq + blk.mlp(blk.mlp_norm(seq))
            torch.testing.assert_close(out[b, k], ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(blk(x, "regions"), out[:, :, 0], rtol=1e-6, atol=1e-6)


def test_pretrain_forward_backward(inputs: tuple[torch.Tensor, torch.Tensor], masks: Masks) -> None:
    video, audio = inputs
    torch.manual_seed(0)
    model = create_model("avf_mae_pp_pretrain_tiny")
    out = model(video, audio, masks)
    assert out.pred_video.shape == (B, 400, 1536) and out.pred_audio.shape == (B, 64, 256)
    assert out.video_loss_mask.sum(1).tolist() == [360, 360]
    assert out.audio_loss_mask.shape == (B, 64)
    total = out.loss_video + out.loss_audio + 0.0025 * out.loss_contrastive
    assert torch.isfinite(out.loss) and out.loss.item() == pytest.approx(total.item(), rel=1e-6)
    assert not out.loss_video.requires_grad and out.loss.requires_grad
    out.loss.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing, f"parameters outside the graph (DDP would need find_unused_parameters): {missing}"


def test_pretrain_never_reads_hidden_patches(inputs: tuple[torch.Tensor, torch.Tensor], masks: Masks) -> None:
    video, audio = inputs
    model = create_model("avf_mae_pp_pretrain_tiny").eval()
    hidden = torch.stack([torch.nonzero(row).flatten() for row in masks.video_enc])  # [B, 720]
    noisy = video.clone()
    grid = (8, 10, 10)
    view = noisy.view(B, 3, 8, 2, 10, 16, 10, 16).permute(0, 2, 4, 6, 1, 3, 5, 7)
    rows = torch.arange(B)[:, None]
    sel = (rows, hidden // 100, hidden // 10 % 10, hidden % 10)
    view[sel] += 5.0 * torch.randn(view[sel].shape, generator=torch.Generator().manual_seed(1))
    assert not torch.equal(gather_video_patches(noisy, hidden, grid), gather_video_patches(video, hidden, grid))
    with torch.no_grad():
        a, b = model(video, audio, masks), model(noisy, audio, masks)
    torch.testing.assert_close(a.pred_video, b.pred_video)
    assert a.loss_video != b.loss_video, "targets at hidden positions do change"


def test_pretrain_grouping_modes(inputs: tuple[torch.Tensor, torch.Tensor], masks: Masks) -> None:
    """On balanced masks the official raster grouping of video tokens already forms the real regions, so
    both modes encode video identically; audio runs of 3 differ from 4x4 blocks."""
    from avf.models.masking import visible_index

    video, audio = inputs
    model = create_model("avf_mae_pp_pretrain_tiny").eval()
    with torch.no_grad():
        outs = []
        for balanced in (True, False):
            v_idx = visible_index(masks.video_enc, "video", balanced)
            a_idx = visible_index(masks.audio_enc, "audio", balanced)
            outs.append(model.forward_encoders(video, audio, v_idx, a_idx))
    torch.testing.assert_close(outs[0][0], outs[1][0])
    assert not torch.allclose(outs[0][1].sort(dim=1).values, outs[1][1].sort(dim=1).values)
    unbalanced = sample_masks(B, MaskingConfig(region_balanced=False), torch.Generator().manual_seed(5))
    with pytest.raises(ValueError, match="region-balanced"):
        model(video, audio, unbalanced)
    raster = create_model("avf_mae_pp_pretrain_tiny", region_balanced=False).eval()
    with torch.no_grad():
        assert raster(video, audio, unbalanced).pred_video.shape == (B, 400, 1536)


def test_pretrain_variants(inputs: tuple[torch.Tensor, torch.Tensor]) -> None:
    video, audio = inputs
    full_dec = sample_masks(B, MaskingConfig(decoder_masking=False), torch.Generator().manual_seed(0))
    model = create_model("avf_mae_pp_pretrain_tiny", iavcl=False, lg_fourth_attn=False, frame_diff_target=False)
    assert model.fusion is None and not hasattr(model.video_encoder.blocks[0], "region_attn")
    out = model(video, audio, full_dec)
    assert out.pred_video.shape == (B, 800, 1536) and out.pred_audio.shape == (B, 128, 256)
    assert out.video_loss_mask.sum().item() == B * 720
    out.loss.backward()
    no_contrast = create_model("avf_mae_pp_pretrain_tiny", contrastive_weight=0.0)
    assert no_contrast(video, audio, full_dec).loss_contrastive.item() == 0.0
    one = sample_masks(1, MaskingConfig(), torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match="at least 2 clips"):
        create_model("avf_mae_pp_pretrain_tiny")(video[:1], audio[:1], one)
    with pytest.raises(ValueError, match="skip layers"):
        create_model("avf_mae_pp_pretrain_tiny", skip_layers=(1, 3))


def test_grad_checkpointing_is_exact(inputs: tuple[torch.Tensor, torch.Tensor], masks: Masks) -> None:
    from avf.models.masking import visible_index

    _, audio = inputs
    model = create_model("avf_mae_pp_pretrain_tiny")
    index = visible_index(masks.audio_enc, "audio", True)
    grads, outs = [], []
    for enabled in (False, True):
        model.set_grad_checkpointing(enabled)
        model.zero_grad()
        final, skips = model.audio_encoder.forward_visible(audio, index, model.skip_layers)
        (final.square().mean() + sum(s.mean() for s in skips)).backward()
        outs.append(final.detach())
        grads.append(model.audio_encoder.blocks[0].mlp.fc1.weight.grad.clone())
    assert model.audio_encoder.grad_checkpointing and model.video_encoder.grad_checkpointing
    torch.testing.assert_close(outs[0], outs[1])
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-5, atol=1e-7)


def test_finetune_forward_backward_and_heads(inputs: tuple[torch.Tensor, torch.Tensor]) -> None:
    video, audio = inputs
    torch.manual_seed(0)
    model = create_model("avf_mae_pp_tiny", num_classes=7)
    logits = model(video, audio)
    assert logits.shape == (B, 7)
    logits.sum().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing, f"parameters outside the graph: {missing}"
    model.eval()
    with torch.no_grad():
        feats = model.forward_features(video, audio)
        assert feats.shape == (B, model.num_features) == (B, 192)
        logits = model(video, audio)
        torch.testing.assert_close(model.forward_head(feats), logits)
        external = nn.Sequential(nn.LayerNorm(192, eps=1e-6), nn.Linear(192, 7))
        external[0].load_state_dict(model.fc_norm.state_dict())
        external[1].load_state_dict(model.head.state_dict())
        torch.testing.assert_close(external(feats), logits)
        model.reset_classifier(3)
        assert model.forward_head(feats).shape == (B, 3) and model.get_classifier().out_features == 3
        model.reset_classifier(0)
        assert torch.equal(model.forward_head(feats), model.fc_norm(feats))


def test_finetune_variants(inputs: tuple[torch.Tensor, torch.Tensor]) -> None:
    video, audio = inputs
    with torch.no_grad():
        reg = create_model("avf_mae_pp_tiny", num_classes=3, head_activation="sigmoid").eval()
        out = reg.forward_head(torch.randn(B, 192) * 10)
        assert ((out > 0) & (out < 1)).all()
        plain = create_model("avf_mae_pp_tiny", num_classes=3, iavcl=False, lg_fourth_attn=False).eval()
        assert plain.fusion is None and plain(video, audio).shape == (B, 3)
    with pytest.raises(ValueError, match="head_activation"):
        create_model("avf_mae_pp_tiny", head_activation="softmax")


def test_layer_decay_groups_follow_the_spec() -> None:
    with torch.device("meta"):
        model = create_model("avf_mae_pp_base", num_classes=11)
    opt = create_optimizer_v2(model, "adamw", lr=1.0, weight_decay=0.05, layer_decay=0.75)
    scale: dict[int, float] = {}
    decay: dict[int, float] = {}
    for group in opt.param_groups:
        for p in group["params"]:
            assert id(p) not in scale, "each parameter in exactly one group"
            scale[id(p)], decay[id(p)] = group["lr_scale"], group["weight_decay"]
    named = dict(model.named_parameters())
    assert set(scale) == {id(p) for p in named.values()}, "group_matcher covers every parameter"
    top = 10 + 3  # L + 3: ids embed 0, blocks 1..10, fusion units 11..12, rest 13

    def layer(name: str) -> int:
        return top - round(math.log(scale[id(named[name])]) / math.log(0.75))

    assert layer("video_encoder.patch_embed.proj.weight") == layer("audio_encoder.patch_embed.proj.bias") == 0
    assert layer("video_encoder.blocks.0.intra_attn.qkv.weight") == 1
    assert layer("audio_encoder.blocks.9.mlp.fc2.weight") == 10
    assert layer("fusion.units.0.video.sa.qkv.weight") == 11 and layer("fusion.units.1.audio.gate1.bias") == 12
    for name in ("fusion.er.proj.weight", "fusion.hafe.ctx_attn.q.weight", "head.weight", "fc_norm.weight"):
        assert layer(name) == top
    assert layer("video_encoder.region_tokens") == top and decay[id(named["video_encoder.region_tokens"])] == 0
    assert decay[id(named["video_encoder.blocks.0.intra_attn.qkv.weight"])] == 0.05


def test_init_finetune_from_pretrain() -> None:
    pre = create_model("avf_mae_pp_pretrain_tiny")
    fine = create_model("avf_mae_pp_tiny", num_classes=5)
    report = init_finetune_from_pretrain(fine, {f"module.{k}": v for k, v in pre.state_dict().items()})
    assert "video_decoder.mask_token" in report["dropped"] and "audio_decoder.embed.weight" in report["dropped"]
    assert all(k.startswith(("video_decoder.", "audio_decoder.")) for k in report["dropped"])
    assert report["missing"] == sorted(
        ["layer_weights_video", "layer_weights_audio", "fc_norm.weight", "fc_norm.bias", "head.weight", "head.bias"]
    )
    assert report["unexpected"] == []
    torch.testing.assert_close(fine.fusion.er.proj.weight, pre.fusion.er.proj.weight)
    torch.testing.assert_close(fine.video_encoder.region_tokens, pre.video_encoder.region_tokens)
    no_fusion = create_model("avf_mae_pp_tiny", iavcl=False)
    assert any(k.startswith("fusion.") for k in init_finetune_from_pretrain(no_fusion, pre.state_dict())["unexpected"])
    bad = dict(pre.state_dict())
    bad["video_encoder.norm.weight"] = torch.ones(7)
    with pytest.raises(ValueError, match=r"video_encoder\.norm\.weight"):
        init_finetune_from_pretrain(fine, bad)


def test_reconstruction_picture(tmp_path: Path, inputs: tuple[torch.Tensor, torch.Tensor], masks: Masks) -> None:
    from avf.eval.plots import reconstruction_png
    from avf.models.viz import reconstruct

    video, audio = inputs
    model = create_model("avf_mae_pp_pretrain_tiny").eval()
    with torch.no_grad():
        out = model(video, audio, masks)
    pics = reconstruct(video, audio, masks, out)
    visible = ~masks.video_enc[0].view(8, 10, 10)
    t, h, w = (int(i) for i in torch.nonzero(visible)[0])
    patch = (slice(2 * t, 2 * t + 2), slice(16 * h, 16 * h + 16), slice(16 * w, 16 * w + 16))
    torch.testing.assert_close(pics["video_recon"][0][(slice(None), *patch)], pics["video"][0][(slice(None), *patch)])
    path = reconstruction_png(pics, tmp_path / "recon.png", max_items=1)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_benchmark_smoke(capsys: pytest.CaptureFixture[str]) -> None:
    spec = importlib.util.spec_from_file_location("model_step", ROOT / "benchmarks" / "model_step.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.main(["--size", "tiny", "--iters", "1", "--warmup", "0", "--batch-size", "2", "--no-isolate"])
    out = capsys.readouterr().out
    assert "ratio" in out and "avf_mae_pp_pretrain_tiny" in out


def test_tubelet_embedding_equals_conv3d(inputs: tuple[torch.Tensor, torch.Tensor]) -> None:
    video, _ = inputs
    model = create_model("avf_mae_pp_tiny")
    embed = model.video_encoder.patch_embed
    index = torch.arange(800)[None].expand(B, -1)
    ref = embed.proj(video).flatten(2).transpose(1, 2)
    torch.testing.assert_close(embed(video, index), ref, rtol=1e-4, atol=1e-4)
    assert F.mse_loss(embed(video, index[:, :5]), ref[:, :5]).item() < 1e-8


# ---- the fused graph computes exactly what the plain module graph does -----


def _fused_vs_plain(
    model: nn.Module, loss_fn: Callable[[nn.Module], torch.Tensor], autocast: bool = False
) -> tuple[tuple[torch.Tensor, dict[str, torch.Tensor]], ...]:
    from avf.models.layers import fused_ops

    results = []
    for fused in (False, True):
        model.zero_grad(set_to_none=True)
        torch.manual_seed(3)  # the same drop-path draws in both runs
        with fused_ops(fused), torch.autocast("cpu", torch.bfloat16, enabled=autocast):
            loss = loss_fn(model)
        loss.backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        results.append((loss.detach().double(), grads))
    return results[0], results[1]


def _perturbed(model: nn.Module) -> nn.Module:
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.02 * torch.randn(p.shape, generator=g))
    return model


@pytest.mark.parametrize("kind", ["pretrain", "finetune"])
def test_fused_ops_match_the_plain_module_graph(
    kind: str, inputs: tuple[torch.Tensor, torch.Tensor], masks: Masks
) -> None:
    """In float64, where the float32 rounding of either graph (gradients of the first blocks are 1e-5 to 1e-4
    of their norm from float64 in both) cannot hide a wrong formula: the same loss and gradients to 1e-9."""
    torch.manual_seed(0)
    video, audio = (t.double() for t in inputs)
    if kind == "pretrain":
        model = _perturbed(create_model("avf_mae_pp_pretrain_tiny")).double()
        (ref, ref_g), (out, out_g) = _fused_vs_plain(model, lambda m: m(video, audio, masks).loss)
    else:  # training mode with stochastic depth: the LG block's shared per-region drop-path draw is exercised
        model = _perturbed(create_model("avf_mae_pp_tiny", num_classes=7, drop_path=0.3)).train().double()
        (ref, ref_g), (out, out_g) = _fused_vs_plain(model, lambda m: m(video, audio).square().mean())
    torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-12)
    assert out_g.keys() == ref_g.keys() and len(ref_g) == len(list(model.parameters()))
    for name in ref_g:
        torch.testing.assert_close(out_g[name], ref_g[name], rtol=1e-9, atol=1e-12, msg=name)


def test_fused_ops_under_bf16_autocast(inputs: tuple[torch.Tensor, torch.Tensor]) -> None:
    """Under bf16 autocast the fused graph is as close to the fp32 result as the plain autocast graph."""
    video, audio = inputs
    model = _perturbed(create_model("avf_mae_pp_tiny", num_classes=7, drop_path=0.0))
    loss_fn = lambda m: m(video, audio).float().square().mean()  # noqa: E731
    (ref16, plain16), (out16, fused16) = _fused_vs_plain(model, loss_fn, True)
    (ref32, plain32), _ = _fused_vs_plain(model, loss_fn, False)

    def flat(g: dict[str, torch.Tensor]) -> torch.Tensor:
        return torch.cat([g[k].flatten() for k in sorted(g)])

    assert all(g.dtype == torch.float32 for g in fused16.values())
    err_fused = (flat(fused16) - flat(plain32)).norm() / flat(plain32).norm()
    err_plain = (flat(plain16) - flat(plain32)).norm() / flat(plain32).norm()
    assert err_fused < 1.5 * err_plain + 1e-3, (float(err_fused), float(err_plain))
    assert abs(out16 - ref32) < 1.5 * abs(ref16 - ref32) + 2e-2 * abs(ref32)


def test_ln_mlp_rows_is_the_mlp_of_each_input() -> None:
    """One MLP call over several inputs (a strided view among them) gives each input's own ``mlp(norm(x))``
    and the same gradients, in float64, with and without autograd."""
    from avf.models.layers import LayerNorm, fused_ops, ln_mlp_rows, make_mlp

    torch.manual_seed(0)
    norm, mlp = _perturbed(LayerNorm(8)).double(), make_mlp(8).double()
    base = torch.randn(3, 4, 6, 8, dtype=torch.float64, requires_grad=True)
    xs = (base[:, :, 0].detach().clone().requires_grad_(), base[:, :, 1:], torch.randn(5, 8).double())
    weights = [torch.randn(x.shape, dtype=torch.float64) for x in xs]

    def run(fused: bool) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        for t in (xs[0], base, *mlp.parameters(), *norm.parameters()):
            t.grad = None
        with fused_ops(fused):
            outs = ln_mlp_rows(xs, norm, mlp)
            with torch.no_grad():
                no_grad = ln_mlp_rows(xs, norm, mlp)
        for o, n in zip(outs, no_grad, strict=True):
            torch.testing.assert_close(n, o, rtol=1e-12, atol=1e-14)
        sum((o * w).sum() for o, w in zip(outs, weights, strict=True)).backward()
        grads = [t.grad for t in (xs[0], base, *mlp.parameters(), *norm.parameters())]
        return [o.detach() for o in outs], grads

    (ref, ref_g), (out, out_g) = run(False), run(True)
    assert [o.shape for o in out] == [x.shape for x in xs]
    assert all(g is not None for g in ref_g) and not xs[1].is_contiguous()
    for a, b in zip((*out, *out_g), (*ref, *ref_g), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_bf16_autocast_casts_each_weight_once_per_step(inputs: tuple[torch.Tensor, torch.Tensor]) -> None:
    """Under bf16 autocast a forward + backward casts each weight to bf16 once: the fused functions save the
    cast for backward, and the LG block's MLP runs once over region and local tokens."""
    from torch.utils._python_dispatch import TorchDispatchMode

    model = create_model("avf_mae_pp_tiny", num_classes=7, drop_path=0.0)
    weights = {p.untyped_storage().data_ptr(): n for n, p in model.named_parameters() if p.dim() == 2}
    casts: dict[str, int] = {}

    class CountCasts(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
            src = args[0] if args else None
            if func is torch.ops.aten._to_copy.default and isinstance(src, torch.Tensor):
                name = weights.get(src.untyped_storage().data_ptr())
                if name is not None and src.shape == model.get_parameter(name).shape:
                    casts[name] = casts.get(name, 0) + 1
            return func(*args, **(kwargs or {}))

    video, audio = inputs
    with CountCasts():
        with torch.autocast("cpu", torch.bfloat16):
            loss = model(video, audio).float().square().mean()
        loss.backward()
    mlp_weights = [n for n in weights.values() if ".mlp.fc" in n and "video_encoder.blocks" in n]
    assert mlp_weights and all(casts.get(n) == 1 for n in mlp_weights), {n: casts.get(n) for n in mlp_weights}
    # HAFE's cross-attention is shared by the video and audio branches, each with its own query LayerNorm
    assert {n for n, c in casts.items() if c > 1} == {"fusion.hafe.ctx_attn.q.weight"}, casts
    assert casts["fusion.hafe.ctx_attn.q.weight"] == 2


def test_bf16_attention_runs_in_fp32_on_a_cpu_without_amx(monkeypatch: pytest.MonkeyPatch) -> None:
    from avf.models import layers

    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 3, 40, 16, generator=g).bfloat16() for _ in range(3))
    upcast = F.scaled_dot_product_attention(q.float(), k.float(), v.float()).bfloat16()
    native = F.scaled_dot_product_attention(q, k, v)
    assert not torch.equal(upcast, native)  # the two paths can be told apart
    monkeypatch.setattr(layers, "UPCAST_CPU_BF16_ATTENTION", True)
    with torch.autocast("cpu", dtype=torch.bfloat16):  # autocast must not cast the fp32 inputs back
        out = layers.attention(q, k, v)
        from_fp32 = layers.attention(q.float(), k.float(), v.float())  # autocast would have run it in bf16
    assert out.dtype == from_fp32.dtype == torch.bfloat16
    assert torch.equal(out, upcast) and torch.equal(from_fp32, upcast)
    monkeypatch.setattr(layers, "UPCAST_CPU_BF16_ATTENTION", False)  # an AMX CPU
    assert torch.equal(layers.attention(q, k, v), native)
    x = q.float()
    assert torch.equal(layers.attention(x, x, x), F.scaled_dot_product_attention(x, x, x))


def test_fused_ops_keep_less_for_backward(inputs: tuple[torch.Tensor, torch.Tensor], masks: Masks) -> None:
    from avf.models.layers import fused_ops
    from benchmarks.harness import saved_tensor_bytes

    video, audio = inputs
    model = create_model("avf_mae_pp_pretrain_tiny")
    sizes = {}
    for fused in (False, True):
        with fused_ops(fused):
            sizes[fused], by_module = saved_tensor_bytes(model, lambda: model(video, audio, masks).loss)
    assert sizes[True] < 0.75 * sizes[False], sizes
    assert "GELU" not in by_module  # the MLP keeps its pre-activation only; GELU is recomputed


def test_compile_model_falls_back_to_eager(monkeypatch: pytest.MonkeyPatch) -> None:
    from avf.models.compile import compile_model

    model = nn.Linear(2, 2)

    def refuse(*args: object, **kwargs: object) -> None:
        raise RuntimeError("no compiler here")

    monkeypatch.setattr(torch, "compile", refuse)
    assert compile_model(model) is model


def test_pretraining_memory_peak_is_what_autograd_saves() -> None:
    """The step's allocator peak (live blocks less gradients) barely exceeds the saved tensors: the targets'
    temporaries come before the activations, and the loss keeps no difference or gradient of its own (with
    them the tiny model's peak was 1.58x its saved bytes, now 1.02-1.04x)."""
    from benchmarks.cases import ours_pretrain
    from benchmarks.harness import memory_profile, saved_tensor_bytes

    runner = ours_pretrain("tiny", 2, torch.device("cpu"))
    peak = memory_profile(runner).activations
    saved, _ = saved_tensor_bytes(runner.model, runner.forward)
    assert saved < peak < 1.1 * saved, (peak, saved)


def test_grad_checkpointing_whole_pretrain_model(inputs: tuple[torch.Tensor, torch.Tensor], masks: Masks) -> None:
    """Encoders and decoders recompute their blocks: same loss and gradients, far less kept for backward."""
    from benchmarks.harness import saved_tensor_bytes

    video, audio = inputs
    model = _perturbed(create_model("avf_mae_pp_pretrain_tiny"))
    runs = {}
    for enabled in (False, True):
        model.set_grad_checkpointing(enabled)
        model.zero_grad(set_to_none=True)
        loss = model(video, audio, masks).loss
        loss.backward()
        saved, by_module = saved_tensor_bytes(model, lambda: model(video, audio, masks).loss)
        # the loss's inputs (prediction and target, saved by masked_mse) are outside every block
        in_modules = saved - by_module.get("<top>", 0)
        runs[enabled] = (loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}, in_modules)
    assert model.video_decoder.grad_checkpointing and model.audio_decoder.grad_checkpointing
    torch.testing.assert_close(runs[True][0], runs[False][0])
    for name, grad in runs[False][1].items():
        torch.testing.assert_close(runs[True][1][name], grad, rtol=1e-4, atol=1e-6, msg=name)
    assert runs[True][2] < 0.5 * runs[False][2], (runs[True][2], runs[False][2])
