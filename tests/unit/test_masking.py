"""Dual masking: ratios, region balance, running cell, determinism, LG token order."""

from __future__ import annotations

import pytest
import torch
from einops import rearrange

from avf.config.model import MaskingConfig
from avf.geometry import AUDIO_GRID, AUDIO_REGION, VIDEO_GRID, VIDEO_REGION
from avf.models.masking import (
    Masks,
    kept_index,
    region_ids,
    running_cell_patterns,
    sample_masks,
    visible_index,
)

B = 16


def _masks(seed: int = 0, **cfg: object) -> Masks:
    return sample_masks(B, MaskingConfig(**cfg), torch.Generator().manual_seed(seed))


def _visible_per_region(mask: torch.Tensor, grid: tuple[int, ...], region: tuple[int, ...]) -> torch.Tensor:
    ids = region_ids(grid, region)
    counts = torch.zeros(mask.shape[0], int(ids.max()) + 1, dtype=torch.long)
    return counts.scatter_add_(1, ids.expand_as(mask), (~mask).long())


@pytest.mark.parametrize("balanced", [True, False])
def test_default_ratios_and_tube(balanced: bool) -> None:
    m = _masks(region_balanced=balanced)
    assert m.video_enc.dtype == torch.bool and m.video_enc.shape == (B, 800)
    assert m.audio_enc.shape == (B, 128) and m.video_dec.shape == (B, 800) and m.audio_dec.shape == (B, 128)
    assert ((~m.video_enc).sum(1) == 80).all()
    assert ((~m.audio_enc).sum(1) == 24).all()
    assert ((~m.video_dec).sum(1) == 400).all()
    assert ((~m.audio_dec).sum(1) == 64).all()
    slices = m.video_enc.view(B, 8, 100)
    assert (slices == slices[:, :1]).all(), "tube mask: the same spatial pattern in every temporal slice"


def test_region_balanced_masks_keep_equal_tokens_per_region() -> None:
    m = _masks(region_balanced=True)
    assert (_visible_per_region(m.video_enc, VIDEO_GRID, VIDEO_REGION) == 10).all()
    assert (_visible_per_region(m.audio_enc, AUDIO_GRID, AUDIO_REGION) == 3).all()
    raster = sample_masks(64, MaskingConfig(region_balanced=False), torch.Generator().manual_seed(0))
    assert not (_visible_per_region(raster.audio_enc, AUDIO_GRID, AUDIO_REGION) == 3).all()


def test_running_cell_decoder_mask() -> None:
    patterns = running_cell_patterns(0.5).view(4, 8, 10, 10)
    cells = patterns[:, :, :2, :2]  # [phase, slice, 2, 2]
    assert (cells.sum(dim=(2, 3)) == 2).all(), "every 2x2 cell keeps exactly 2 positions"
    assert torch.equal(patterns, cells.repeat(1, 1, 5, 5)), "the cell is tiled over each slice"
    assert not (cells[:, :-1] == cells[:, 1:]).all(dim=(2, 3)).any(), "the cell advances every slice"
    assert torch.equal(cells[:, :4], cells[:, 4:]), "period 4"
    assert len({tuple(p.flatten().tolist()) for p in running_cell_patterns(0.5)}) == 4
    m = sample_masks(200, MaskingConfig(), torch.Generator().manual_seed(3))
    phases = {tuple(row.tolist()) for row in m.video_dec[:, :100]}
    assert len(phases) == 4, "all four phases are drawn"


def test_no_decoder_masking() -> None:
    m = _masks(decoder_masking=False)
    assert not m.video_dec.any() and not m.audio_dec.any()


def test_deterministic_per_seed_and_independent_of_global_rng() -> None:
    torch.manual_seed(1)
    a = _masks(seed=7)
    state = torch.get_rng_state()
    torch.manual_seed(2)
    b = _masks(seed=7)
    c = _masks(seed=8)
    for name in ("video_enc", "audio_enc", "video_dec", "audio_dec"):
        assert torch.equal(getattr(a, name), getattr(b, name))
    assert not torch.equal(a.video_enc, c.video_enc)
    torch.manual_seed(1)
    _masks(seed=7)
    assert torch.equal(torch.get_rng_state(), state), "the global RNG is never consumed"


@pytest.mark.parametrize(
    ("cfg", "message"),
    [
        ({"video_ratio": 0.75}, "cannot be split evenly"),
        ({"audio_ratio": 0.8}, "audio_ratio"),
        ({"decoder_video_ratio": 0.3}, "running-cell"),
    ],
)
def test_invalid_ratios_are_clear_errors(cfg: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        sample_masks(2, MaskingConfig(**cfg), torch.Generator())


def test_other_valid_ratios() -> None:
    m = _masks(video_ratio=0.8, audio_ratio=0.875, decoder_video_ratio=0.25)
    assert ((~m.video_enc).sum(1) == 160).all() and ((~m.audio_enc).sum(1) == 16).all()
    assert ((~m.video_dec).sum(1) == 600).all()
    assert (_visible_per_region(m.video_enc, VIDEO_GRID, VIDEO_REGION) == 20).all()


def test_region_ids() -> None:
    video = region_ids(VIDEO_GRID, VIDEO_REGION).view(8, 10, 10)
    assert video[0, 0, 0] == 0 and video[0, 5, 0] == 1 and video[2, 0, 9] == 2 and video[7, 9, 9] == 7
    audio = region_ids(AUDIO_GRID, AUDIO_REGION).view(16, 8)
    assert audio[0, 3] == 0 and audio[0, 4] == 1 and audio[4, 0] == 2 and audio[15, 7] == 7


def test_visible_index_groups_real_regions_when_balanced() -> None:
    m = _masks(region_balanced=True)
    for mask, modality, grid, region in (
        (m.video_enc, "video", VIDEO_GRID, VIDEO_REGION),
        (m.audio_enc, "audio", AUDIO_GRID, AUDIO_REGION),
    ):
        idx = visible_index(mask, modality, region_balanced=True)
        assert not mask.gather(1, idx).any(), "only visible positions"
        groups = region_ids(grid, region)[idx].view(B, 8, -1)
        assert (groups == torch.arange(8)[None, :, None]).all()
        assert (idx.view(B, 8, -1).diff(dim=2) > 0).all(), "raster order inside a region"


def test_visible_index_raster_grouping_matches_official_rearrange() -> None:
    m = _masks(region_balanced=False)
    raster = torch.stack([torch.nonzero(~row).flatten() for row in m.video_enc])
    expected = rearrange(raster, "b (nt t nhw hw) -> b (nt nhw t hw)", nt=4, t=2, nhw=2)
    assert torch.equal(visible_index(m.video_enc, "video", region_balanced=False), expected)
    raster_a = torch.stack([torch.nonzero(~row).flatten() for row in m.audio_enc])
    assert torch.equal(visible_index(m.audio_enc, "audio", region_balanced=False), raster_a)
    # On region-balanced masks both groupings coincide: the official rearrange then gives real regions.
    mb = _masks(region_balanced=True)
    assert torch.equal(
        visible_index(mb.video_enc, "video", region_balanced=False),
        visible_index(mb.video_enc, "video", region_balanced=True),
    )


def test_visible_index_errors() -> None:
    raster = sample_masks(64, MaskingConfig(region_balanced=False), torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match="not region-balanced"):
        visible_index(raster.audio_enc, "audio", region_balanced=True)
    uneven = raster.audio_enc.clone()
    uneven[0, torch.nonzero(~uneven[0])[0]] = True
    with pytest.raises(ValueError, match="same number of tokens"):
        visible_index(uneven, "audio", region_balanced=False)
    with pytest.raises(ValueError, match="modality"):
        visible_index(raster.audio_enc, "text", region_balanced=False)


def test_kept_index_and_masks_helpers() -> None:
    m = _masks()
    idx = kept_index(m.video_dec)
    assert idx.shape == (B, 400) and (idx.diff(dim=1) > 0).all() and not m.video_dec.gather(1, idx).any()
    both = Masks.cat([m, m])
    assert both.batch_size == 2 * B and torch.equal(both.audio_dec[B:], m.audio_dec)
    assert m.to("cpu").video_enc.device.type == "cpu"
