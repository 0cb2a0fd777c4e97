"""Reconstruction targets, masked MSE and the contrastive loss (HCMCL)."""

from __future__ import annotations

import contextlib
import math
from pathlib import Path

import pytest
import torch

# Imported before any process group exists: its functions take `group=group.WORLD` as a default, evaluated at
# import. A spawned rank imports this test module first, so that default is None and not the rank's group,
# which it would otherwise hold past destroy_process_group() (see the end of _dist_worker).
import torch.distributed.nn.functional
import torch.multiprocessing as mp
import torch.nn.functional as F
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

from avf.models.losses import (
    MSE_CHUNK_ROWS,
    audio_targets,
    contrastive_loss,
    hcmcl,
    masked_mse,
    video_targets,
)


def _norm(x: torch.Tensor) -> torch.Tensor:
    return (x - x.mean()) / (x.std(unbiased=True) + 1e-6)


def test_video_targets_per_patch_per_channel_with_frame_difference() -> None:
    torch.manual_seed(0)
    patches = torch.randn(2, 3, 3, 2, 16, 16)  # [B, n, c, t, h, w], ImageNet-normalized
    target = video_targets(patches, frame_diff=True)
    plain = video_targets(patches, frame_diff=False)
    assert target.shape == (2, 3, 1536) and target.dtype == torch.float32
    b, n = 1, 2
    t = target[b, n].view(2, 16, 16, 3)  # (p0, p1, p2, c) layout
    p = plain[b, n].view(2, 16, 16, 3)
    for c in range(3):
        pixels = patches[b, n, c] * IMAGENET_DEFAULT_STD[c] + IMAGENET_DEFAULT_MEAN[c]
        normed = _norm(pixels)  # over the 2x16x16 values of this channel
        torch.testing.assert_close(p[..., c], normed.permute(0, 1, 2), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(t[0, ..., c], normed[0], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(t[1, ..., c], normed[1] - normed[0], rtol=1e-5, atol=1e-5)


def test_audio_targets() -> None:
    torch.manual_seed(0)
    patches = torch.randn(2, 5, 1, 16, 16) * 3 + 1
    target = audio_targets(patches)
    assert target.shape == (2, 5, 256)
    torch.testing.assert_close(target[1, 4], _norm(patches[1, 4].flatten()), rtol=1e-5, atol=1e-5)


def test_masked_mse_counts_only_loss_positions() -> None:
    pred = torch.zeros(2, 3, 4)
    target = torch.tensor([[1.0, 100.0, 2.0], [3.0, 100.0, 100.0]])[..., None].expand(2, 3, 4)
    weight = torch.tensor([[True, False, True], [True, False, False]])
    # per-token MSE 1, 4, 9 at the three loss positions -> mean 14 / 3
    assert masked_mse(pred, target, weight).item() == pytest.approx(14 / 3)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_masked_mse_is_the_autograd_formula_to_the_last_bit(dtype: torch.dtype) -> None:
    g = torch.Generator().manual_seed(0)
    rows = 3 * MSE_CHUNK_ROWS + 7  # several chunks and a short last one
    pred = torch.randn(rows, 2, 48, generator=g).to(dtype).requires_grad_()
    target = torch.randn(rows, 2, 48, generator=g)
    weight = torch.rand(rows, 2, generator=g) > 0.3

    def formula(p: torch.Tensor) -> torch.Tensor:
        per_token = (p.float() - target).pow(2).mean(dim=-1)
        w = weight.to(per_token.dtype)
        return (per_token * w).sum() / w.sum().clamp_min(1.0)

    expected = formula(pred)
    (expected_grad,) = torch.autograd.grad(expected * 3.0, pred)
    for overwrite in (False, True):
        scratch = target.clone()
        loss = masked_mse(pred, scratch, weight, overwrite_target=overwrite)
        (grad,) = torch.autograd.grad(loss * 3.0, pred)
        assert torch.equal(loss, expected)
        assert grad.dtype == dtype and torch.equal(grad, expected_grad)
        assert torch.count_nonzero(grad[~weight]) == 0
        assert torch.equal(scratch, target) is not overwrite


def test_masked_mse_saves_no_difference_of_its_own() -> None:
    pred = torch.randn(2, 600, 64, requires_grad=True)
    target = torch.randn(2, 600, 64)
    saved: list[int] = []

    def pack(t: torch.Tensor) -> torch.Tensor:
        saved.append(t.untyped_storage().nbytes())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        masked_mse(pred, target, torch.ones(2, 600, dtype=torch.bool))
    # pred, target, the [B, m] weights and the weight sum
    assert sorted(saved) == sorted([pred.nbytes, target.nbytes, 2 * 600 * 4, 4])


def test_masked_mse_overwrites_no_target_for_a_float64_prediction() -> None:
    # the formula rounds pred to float32 before subtracting; a float64 difference would not
    pred = torch.tensor([[[1.0 + 2.0**-30]]], dtype=torch.float64, requires_grad=True)
    target = torch.ones(1, 1, 1)
    masked_mse(pred, target, torch.ones(1, 1, dtype=torch.bool), overwrite_target=True).backward()
    assert pred.grad is not None and pred.grad.item() == 0.0 and target.item() == 1.0


def test_masked_mse_names_mismatched_shapes() -> None:
    with pytest.raises(ValueError, match=r"pred \(2, 3, 4\), target \(2, 3, 5\)"):
        masked_mse(torch.zeros(2, 3, 4), torch.zeros(2, 3, 5), torch.ones(2, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match="must not require grad"):
        masked_mse(torch.zeros(2, 3, 4), torch.zeros(2, 3, 4, requires_grad=True), torch.ones(2, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match="must not require grad"):
        masked_mse(torch.zeros(2, 3, 4), torch.zeros(2, 3, 4), torch.ones(2, 3, requires_grad=True))


def test_masked_mse_overwriting_its_target_refuses_a_second_backward() -> None:
    pred = torch.randn(4, 3, 8, requires_grad=True)
    loss = masked_mse(pred, torch.randn(4, 3, 8), torch.ones(4, 3, dtype=torch.bool), overwrite_target=True)
    loss.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        loss.backward()
    # a target it cannot overwrite (a broadcast view) is left alone
    target = torch.randn(3, 8).expand(4, 3, 8)
    before = target.clone()
    masked_mse(pred, target, torch.ones(4, 3, dtype=torch.bool), overwrite_target=True).backward()
    assert torch.equal(target, before)


def test_masked_mse_without_loss_positions_is_zero() -> None:
    pred = torch.randn(2, 3, 4, requires_grad=True)
    loss = masked_mse(pred, torch.randn(2, 3, 4), torch.zeros(2, 3, dtype=torch.bool))
    loss.backward()
    assert loss.item() == 0.0 and torch.count_nonzero(pred.grad) == 0


def test_contrastive_loss_hand_computed() -> None:
    z_v = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    z_a = torch.tensor([[1.0, 0.0], [0.6, 0.8]])
    tau = 0.5
    # logits_v = z_v z_a^T / tau = [[2, 1.2], [0, 1.6]]; logits_a = its transpose = [[2, 0], [1.2, 1.6]]
    ce_v = 0.5 * ((-2 + math.log(math.exp(2) + math.exp(1.2))) + (-1.6 + math.log(math.exp(0) + math.exp(1.6))))
    ce_a = 0.5 * ((-2 + math.log(math.exp(2) + math.exp(0))) + (-1.6 + math.log(math.exp(1.2) + math.exp(1.6))))
    expected = 0.5 * (ce_v + ce_a)
    assert contrastive_loss(z_v, z_a, tau).item() == pytest.approx(expected, rel=1e-6)
    # without a process group, gather_negatives changes nothing
    assert contrastive_loss(z_v, z_a, tau, gather_negatives=True).item() == pytest.approx(expected, rel=1e-6)


def test_hcmcl_pools_normalizes_and_sums_layers() -> None:
    torch.manual_seed(0)
    video = [torch.randn(4, 10, 8) for _ in range(3)]
    audio = [torch.randn(4, 3, 8) for _ in range(3)]
    expected = sum(
        contrastive_loss(F.normalize(v.mean(1), dim=-1), F.normalize(a.mean(1), dim=-1), 0.07)
        for v, a in zip(video, audio, strict=True)
    )
    assert hcmcl(video, audio, 0.07).item() == pytest.approx(float(expected), rel=1e-6)
    with pytest.raises(ValueError):
        hcmcl(video, audio[:2])


def _gloo_threads() -> list[str]:
    """This process's gloo worker threads (Linux names them ``pt_gloo_runloop`` in /proc)."""
    names = []
    for task in Path("/proc/self/task").iterdir():
        with contextlib.suppress(FileNotFoundError):  # a thread that ended meanwhile
            names.append((task / "comm").read_text().strip())
    return [n for n in names if n.startswith("pt_gloo")]


def _dist_worker(rank: int, world: int, init_file: str, z_v: torch.Tensor, z_a: torch.Tensor, out: str) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        rows = slice(rank * 2, rank * 2 + 2)
        v = z_v[rows].clone().requires_grad_(True)
        a = z_a[rows].clone().requires_grad_(True)
        loss = contrastive_loss(v, a, 0.1, gather_negatives=True)
        loss.backward()
        torch.save({"loss": loss.detach(), "gv": v.grad, "ga": a.grad}, f"{out}.{rank}")
        dist.barrier()  # no rank closes its connections while the other may still be receiving
    finally:
        dist.destroy_process_group()
    # Freeing the group joins its worker threads. A worker still alive would drop its last collective's
    # tensors (a Py_DECREF, so it takes the GIL) while the interpreter shuts down, and a thread that takes
    # the GIL during shutdown is ended mid-destructor: "terminate called without an active exception".
    assert not _gloo_threads(), "something holds the process group past destroy_process_group()"


def test_gather_negatives_uses_rank_offsets(monkeypatch: pytest.MonkeyPatch) -> None:
    """In-process check of the label offsets: rank r's rows are matched to rows r*B.. of the gathered set."""
    import avf.models.losses as losses

    torch.manual_seed(0)
    z_v = F.normalize(torch.randn(4, 6), dim=-1)
    z_a = F.normalize(torch.randn(4, 6), dim=-1)
    full = contrastive_loss(z_v, z_a, 0.1)
    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: True)
    per_rank = []
    for rank in range(2):
        local_v, local_a = z_v[2 * rank : 2 * rank + 2], z_a[2 * rank : 2 * rank + 2]
        gathered = {id(local_v): z_v, id(local_a): z_a}
        monkeypatch.setattr(losses, "_gather_with_grad", lambda x, g=gathered, r=rank: (g[id(x)], r))
        per_rank.append(contrastive_loss(local_v, local_a, 0.1, gather_negatives=True))
    assert (per_rank[0] + per_rank[1]).item() / 2 == pytest.approx(full.item(), rel=1e-6)


@pytest.mark.slow
def test_gather_negatives_across_two_ranks(tmp_path: Path) -> None:
    torch.manual_seed(0)
    z_v = F.normalize(torch.randn(4, 6), dim=-1)
    z_a = F.normalize(torch.randn(4, 6), dim=-1)
    out = str(tmp_path / "res")
    mp.start_processes(
        _dist_worker, args=(2, str(tmp_path / "init"), z_v, z_a, out), nprocs=2, join=True, start_method="spawn"
    )
    full_v, full_a = z_v.clone().requires_grad_(True), z_a.clone().requires_grad_(True)
    full = contrastive_loss(full_v, full_a, 0.1)
    full.backward()
    results = [torch.load(f"{out}.{r}") for r in range(2)]
    # mean of the per-rank losses is the full-batch loss (every rank sees all 4 clips as negatives)
    assert (results[0]["loss"] + results[1]["loss"]).item() / 2 == pytest.approx(full.item(), rel=1e-5)
    # the gather keeps the gradient path: DDP's 1/world averaging then gives the full-batch gradient
    for r, res in enumerate(results):
        rows = slice(2 * r, 2 * r + 2)
        torch.testing.assert_close(res["gv"] / 2, full_v.grad[rows], rtol=1e-4, atol=1e-6)
        torch.testing.assert_close(res["ga"] / 2, full_a.grad[rows], rtol=1e-4, atol=1e-6)
