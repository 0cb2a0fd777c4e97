"""Loaders over shards: the model input contract, windows, audio by timestamps, determinism, streaming."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import torch
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from torch.utils.data import DataLoader

from avf.config.data import AudioConfig, AugmentConfig, ClipConfig
from avf.data import audio as audio_mod
from avf.data.loader import (
    ClipDataset,
    Sample,
    item_bytes,
    pretrain_stream,
    train_indices,
    view_indices,
    window_span,
)
from avf.data.shards import INDEX_NAME, CorruptSampleError, ShardIndex, ShardWriter
from avf.data.transforms import ClipTransform, erase_box, multi_scale_crop_params, rrc_params, to_model_input
from avf.data.video import encode_jpeg
from avf.train.sampling import GlobalBatchSampler
from avf.train.tasks import persistent_loader
from tests.support import media
from tests.support.shards import AUDIO, TONES, write_shards
from tests.support.shards import sample as shard_sample

CLIP = ClipConfig()  # 16 frames, stride 4, 160 px, 2 test views


@pytest.fixture(scope="module")
def shard_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_shards(tmp_path_factory.mktemp("shards"), 4, per_shard=2)


def _frame_ids(video: torch.Tensor) -> list[int]:
    """Recover frame indices from a uint8 [T, S, S, 3] eval clip (channel 0 level)."""
    return [round(float(v) / 2) for v in video[:, 40:120, 40:120, 0].float().mean(dim=(1, 2))]


def test_window_indices_follow_the_official_protocol() -> None:
    rng = np.random.default_rng(0)
    idx = train_indices(100, 16, 4, rng)
    assert len(idx) == 16 and np.all(np.diff(idx) == 4) and 0 <= idx[0] <= 100 - 64
    short = train_indices(30, 16, 4, rng)
    assert short.tolist() == [0, 4, 8, 12, 16, 20, 24, 28] + [28] * 8  # padded with the last frame
    views = view_indices(100, 16, 4, 2)
    assert views[0].tolist() == list(range(0, 64, 4)) and views[1].tolist() == list(range(36, 100, 4))
    assert view_indices(100, 16, 4, 1)[0][0] == 16  # one view: centred
    times = np.arange(100) / 25
    assert window_span(times, views[0], 4) == pytest.approx((0.0, 2.56))
    assert window_span(times, views[1], 4) == pytest.approx((1.44, 4.0))  # extrapolated past the last frame
    assert window_span(times[:30], short, 4) == pytest.approx((0.0, 1.28))


def test_eval_items_have_the_contract_shapes_and_are_deterministic(shard_dir: Path) -> None:
    ds = ClipDataset(shard_dir, None, train=False, clip=CLIP, audio=AUDIO)
    assert len(ds) == 4 and ds.keys == ShardIndex.load(shard_dir).keys
    item = ds[1]
    assert item["video"].shape == (2, 16, 160, 160, 3) and item["video"].dtype == torch.uint8
    assert item["audio"].shape == (2, 1, 256, 128) and item["audio"].dtype == torch.float32
    assert item["label"].dtype == torch.int64 and item["label"].ndim == 0
    assert item["key"] == ds.keys[1] and item["dataset"] == "demo"
    again = ds[1]
    assert torch.equal(item["video"], again["video"]) and torch.equal(item["audio"], again["audio"])
    # 80 frames -> 20 at stride 4 -> views start at sampled 0 and 4 (frames 0 and 16)
    assert _frame_ids(item["video"][0]) == list(range(0, 64, 4))
    assert _frame_ids(item["video"][1]) == list(range(16, 80, 4))


def test_view_audio_is_cut_at_the_views_timestamps(tmp_path: Path) -> None:
    out = write_shards(tmp_path, 1, per_shard=1, n_frames=100, size=64)
    ds = ClipDataset(out, None, train=False, clip=ClipConfig(image_size=64, test_views=2), audio=AUDIO)
    item = ds[0]
    bins = {f: int(audio_mod.log_mel(media.tone_schedule((f,), 1.0, 16000)[0], AUDIO).mean(0).argmax()) for f in TONES}
    # view 0 starts at t = 0 (tone 0); view 1 at frame 36, t = 1.44 s: tone 2, which changes to tone 3
    # at 1.50 s, i.e. 6 fbank frames (10 ms each) into the window
    assert int(item["audio"][0, 0, 2:20].mean(0).argmax()) == bins[TONES[0]]
    assert int(item["audio"][1, 0, 0:4].mean(0).argmax()) == bins[TONES[2]]
    assert int(item["audio"][1, 0, 8:40].mean(0).argmax()) == bins[TONES[3]]
    assert int(item["audio"][1, 0, 58:90].mean(0).argmax()) == bins[TONES[0]]  # 2.0-2.5 s: the cycle restarts


def test_train_items_are_seeded_per_key_and_epoch(shard_dir: Path) -> None:
    ds = ClipDataset(shard_dir, None, train=True, clip=CLIP, audio=AUDIO, seed=1)
    a = ds[0]
    assert a["video"].shape == (16, 160, 160, 3) and a["audio"].shape == (1, 256, 128)
    assert torch.equal(a["video"], ds[0]["video"]) and torch.equal(a["audio"], ds[0]["audio"])
    subset = ClipDataset(shard_dir, [ds.keys[0]], train=True, clip=CLIP, audio=AUDIO, seed=1)
    assert torch.equal(subset[0]["video"], a["video"])  # independent of which other keys are loaded
    ds.set_epoch(1)
    assert not torch.equal(ds[0]["video"], a["video"])


def test_keys_select_clips_in_index_order(shard_dir: Path) -> None:
    keys = ShardIndex.load(shard_dir).keys
    ds = ClipDataset(shard_dir, [keys[3], keys[1], keys[3]], train=False, clip=CLIP, audio=AUDIO)
    assert ds.keys == [keys[1], keys[3]]
    with pytest.raises(KeyError, match=r"1 key\(s\) not in .*index.json, e.g. \['demo__nope'\]"):
        ClipDataset(shard_dir, ["demo__nope"], train=False, clip=CLIP, audio=AUDIO)


def test_regression_targets_and_unlabelled_clips(tmp_path: Path) -> None:
    reg = write_shards(tmp_path / "r", 1, 1, n_frames=20, size=64, targets=[0.5, -1.0, 2.0])
    item = ClipDataset(reg, None, train=False, clip=ClipConfig(image_size=64), audio=AUDIO)[0]
    assert item["label"].dtype == torch.float32 and item["label"].tolist() == [0.5, -1.0, 2.0]
    unl = write_shards(tmp_path / "u", 1, 1, n_frames=20, size=64, label=-1)
    item = ClipDataset(unl, None, train=False, clip=ClipConfig(image_size=64), audio=AUDIO)[0]
    assert item["label"].item() == -1 and item["label"].dtype == torch.int64


def test_default_collate_batches_train_items(shard_dir: Path) -> None:
    ds = ClipDataset(shard_dir, None, train=True, clip=CLIP, audio=AUDIO)
    batch = next(iter(DataLoader(ds, batch_size=2)))
    assert batch["video"].shape == (2, 16, 160, 160, 3) and batch["audio"].shape == (2, 1, 256, 128)
    assert batch["video"].dtype == torch.uint8 and batch["erase"].shape == (2, 5)
    assert batch["label"].shape == (2,) and len(batch["key"]) == 2
    # the shared-memory budget's estimate is what the batches really hold (the 5 erase numbers aside)
    assert batch["video"].nbytes + batch["audio"].nbytes == 2 * item_bytes(CLIP, AUDIO)
    test = next(iter(DataLoader(ClipDataset(shard_dir, None, train=False, clip=CLIP, audio=AUDIO), batch_size=2)))
    assert test["video"].nbytes + test["audio"].nbytes == 2 * item_bytes(CLIP, AUDIO, train=False)


def test_corrupt_frames_raise_in_the_indexed_reader(tmp_path: Path) -> None:
    out = write_shards(tmp_path, 2, 2, n_frames=20, size=64, bad={1: "00004.jpg"})
    ds = ClipDataset(out, None, train=False, clip=ClipConfig(image_size=64), audio=AUDIO)
    with pytest.raises(CorruptSampleError, match=r"shard-000000.tar: sample 'demo__c01': frame 4"):
        ds[ds.keys.index("demo__c01")]


def test_mismatched_fbank_bins_are_refused(shard_dir: Path) -> None:
    with pytest.raises(ValueError, match=r"shards hold 128-bin fbank but data\.audio\.num_mel_bins is 64"):
        ClipDataset(shard_dir, None, train=False, clip=CLIP, audio=AudioConfig(num_mel_bins=64))


# ---------------------------------------------------------------------------------------- streaming

SMALL = ClipConfig(num_frames=4, sampling_rate=2, image_size=32)


@pytest.fixture(scope="module")
def stream_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("stream")
    writer = ShardWriter(out, 1 << 30, 3)
    for i in range(24):  # 8 shards of 3
        writer.write(f"demo__s{i:02d}", shard_sample(i, 12, size=32))
    index = ShardIndex("demo", writer.close(), "fbank", "fp", {"num_mel_bins": 128})
    (out / INDEX_NAME).write_text(json.dumps(index.to_json()))
    return out


def test_stream_splits_over_ranks_and_workers_and_covers_everything(stream_dir: Path) -> None:
    per_rank = []
    for rank in range(2):
        stream = pretrain_stream(
            [stream_dir], clip=SMALL, audio=AUDIO, seed=0, rank=rank, world_size=2, samples_per_epoch=None
        )
        loader = DataLoader(stream, batch_size=3, num_workers=2)
        keys = [k for batch in loader for k in batch["key"]]
        assert len(stream) == 12
        per_rank.append(keys)
    assert len(per_rank[0]) == len(per_rank[1]) == 12  # equal batches per rank
    everything = per_rank[0] + per_rank[1]
    assert sorted(everything) == [f"demo__s{i:02d}" for i in range(24)]  # each sample exactly once


def test_every_micro_batch_of_the_epoch_arrives_with_several_workers(stream_dir: Path) -> None:
    # 10 samples per rank in batches of 2 over 3 DataLoader workers: 5 batches. Split per sample (4, 3, 3),
    # each worker would drop its odd sample and the rank would see 4 batches.
    stream = pretrain_stream(
        [stream_dir], clip=SMALL, audio=AUDIO, seed=0, rank=0, world_size=2, samples_per_epoch=20, batch_size=2
    )
    assert [stream._quota(w, 3) for w in range(3)] == [4, 4, 2]
    batches = list(DataLoader(stream, batch_size=2, num_workers=3, drop_last=True))
    assert len(batches) == 5 and all(len(b["key"]) == 2 for b in batches)


def test_stream_items_and_equal_quota_with_resampling(stream_dir: Path) -> None:
    counts = []
    for rank in range(3):
        stream = pretrain_stream(
            [stream_dir], clip=SMALL, audio=AUDIO, seed=5, rank=rank, world_size=3, samples_per_epoch=20
        )
        items = list(stream)
        counts.append(len(items))
    assert counts == [6, 6, 6]
    item = items[0]
    assert set(item) == {"video", "audio", "key"}
    assert item["video"].shape == (4, 32, 32, 3) and item["audio"].shape == (1, 256, 128)
    stream.set_epoch(1)
    assert [i["key"] for i in stream] != [i["key"] for i in items]  # reshuffled per epoch


def test_too_few_shards_for_the_readers_is_a_clear_error(stream_dir: Path) -> None:
    with pytest.raises(ValueError, match=r"8 shard\(s\) for 10 readers \(world_size 5 x 2 DataLoader workers\)"):
        pretrain_stream(
            [stream_dir], clip=SMALL, audio=AUDIO, seed=0, rank=0, world_size=5, samples_per_epoch=None, num_workers=2
        )
    lazy = pretrain_stream([stream_dir], clip=SMALL, audio=AUDIO, seed=0, rank=0, world_size=9, samples_per_epoch=None)
    with pytest.raises(ValueError, match="every reader needs at least one shard"):
        next(iter(lazy))


def test_stream_skips_and_counts_corrupt_samples(tmp_path: Path) -> None:
    out = write_shards(tmp_path, 6, 3, n_frames=12, size=32, bad={2: "meta.json"})
    stream = pretrain_stream([out], clip=SMALL, audio=AUDIO, seed=0, rank=0, world_size=1, samples_per_epoch=6)
    keys = [item["key"] for item in stream]
    assert len(keys) == 6 and stream.skipped >= 1  # the quota is still met (from the other samples)


# ---------------------------------------------------------------------------------------- transforms


def _float_reference(t: ClipTransform, frames: np.ndarray, rng: np.random.Generator, stage: str) -> torch.Tensor:
    """The clip as a float pipeline makes it (crop and resize in float32, normalise, then erase), drawing from
    ``rng`` in the same order as :class:`ClipTransform`: what the uint8 path must reproduce."""
    a = t.augment
    x = torch.from_numpy(frames).permute(3, 0, 1, 2).float()  # [3, T, H, W]
    if stage == "finetune":  # the official pre-resize to S x S and RandAugment work on bytes in both paths
        frames = np.stack([cv2.resize(f, (t.size, t.size), interpolation=cv2.INTER_LINEAR) for f in frames])
        x = torch.from_numpy(t.rand_augment(frames, int(rng.integers(2**31)))).permute(3, 0, 1, 2).float()
        top, left, h, w = rrc_params(rng, x.shape[-2], x.shape[-1], a.rrc_scale, a.rrc_ratio)
    else:
        top, left, h, w = multi_scale_crop_params(
            rng, x.shape[-2], x.shape[-1], t.size, a.pretrain_scales, a.pretrain_max_distort
        )
    x = x[..., top : top + h, left : left + w]
    if (h, w) != (t.size, t.size):
        x = torch.nn.functional.interpolate(x, size=(t.size, t.size), mode="bilinear", antialias=True)
    if stage == "finetune" and rng.random() < a.hflip:
        x = x.flip(-1)
    x = (x - torch.tensor(IMAGENET_DEFAULT_MEAN).view(3, 1, 1, 1) * 255) / (
        torch.tensor(IMAGENET_DEFAULT_STD).view(3, 1, 1, 1) * 255
    )
    if stage == "finetune":
        top, left, h, w, seed = erase_box(rng, a.erase_prob, t.size, t.size)
        if h:
            noise = torch.randn((3, x.shape[1], h, w), generator=torch.Generator().manual_seed(seed))
            x[:, :, top : top + h, left : left + w] = noise
    return x


@pytest.mark.parametrize("stage", ["finetune", "pretrain"])
def test_uint8_clips_give_the_float_pipelines_model_input_within_one_level(stage: str) -> None:
    # uint8 until the device: the model input may differ from a float pipeline's only by the rounding of the
    # resized bytes, one level of 255 (1 / (255 * std) after normalisation); the erased noise is identical
    frames = np.stack(media.face_frames(8, (176, 150)))
    t = ClipTransform(160, AugmentConfig(erase_prob=1.0 if stage == "finetune" else 0.0))
    one_level = 1 / (255 * torch.tensor(IMAGENET_DEFAULT_STD).view(1, 3, 1, 1, 1)) + 1e-5
    for seed in range(6):
        if stage == "finetune":
            video, erase = t.finetune(frames, np.random.default_rng(seed))
            x = to_model_input(video[None], erase[None])
        else:
            video = t.pretrain(frames, np.random.default_rng(seed))
            x = to_model_input(video[None])
        assert video.dtype == torch.uint8 and video.shape == (8, 160, 160, 3)
        ref = _float_reference(t, frames, np.random.default_rng(seed), stage)[None]
        assert ((x - ref).abs() <= one_level).all(), f"seed {seed}"
        if stage == "finetune" and erase[2]:
            top, left, h, w, _ = erase.tolist()
            box = (..., slice(top, top + h), slice(left, left + w))
            assert torch.equal(x[box], ref[box]), f"seed {seed}: the erased noise differs"


def test_finetune_augmentation_is_identical_for_every_frame() -> None:
    frame = media.face_frames(1, (160, 160))[0]
    frames = np.stack([frame] * 4)
    t = ClipTransform(160, AugmentConfig(erase_prob=0.0))
    for seed in range(5):
        out, erase = t.finetune(frames, np.random.default_rng(seed))
        assert out.shape == (4, 160, 160, 3) and erase.tolist() == [0, 0, 0, 0, 0]
        assert all(torch.equal(out[0], out[k]) for k in range(1, 4)), f"seed {seed}"
    plain = ClipTransform(160, AugmentConfig(rand_augment="", erase_prob=0.0, hflip=0.0, rrc_scale=(1.0, 1.0)))
    out, erase = plain.finetune(frames, np.random.default_rng(0))
    torch.testing.assert_close(to_model_input(out[None], erase[None]), to_model_input(plain.eval(frames)[None]))


def test_erasing_is_one_box_per_clip() -> None:
    frames = np.stack([np.full((64, 64, 3), 128, np.uint8)] * 3)
    t = ClipTransform(64, AugmentConfig(rand_augment="", erase_prob=1.0, rrc_scale=(1.0, 1.0), hflip=0.0))
    out, erase = t.finetune(frames, np.random.default_rng(0))
    erased, plain = to_model_input(out[None], erase[None])[0], to_model_input(t.eval(frames)[None])[0]
    changed = (erased - plain).abs().sum(0) > 1e-6  # [T, H, W]
    assert changed[0].any() and all(torch.equal(changed[0], changed[k]) for k in (1, 2))


def test_crop_parameters_stay_in_bounds() -> None:
    rng = np.random.default_rng(0)
    for _ in range(200):
        top, left, h, w = rrc_params(rng, 160, 160, (0.08, 1.0), (0.75, 4 / 3))
        assert 0 <= top <= 160 - h and 0 <= left <= 160 - w and 0.08 * 0.99 <= h * w / 160**2 <= 1.0
        top, left, h, w = multi_scale_crop_params(rng, 160, 160, 160, (1.0, 0.875, 0.75, 0.66), 1)
        assert h in (160, 140, 120, 105) and w in (160, 140, 120, 105) and top + h <= 160 and left + w <= 160


def test_a_frame_that_decodes_to_another_size_is_a_corrupt_sample() -> None:
    """A damaged JPEG header can decode to a valid image of the wrong shape (found by the byte-flip property)."""
    good = encode_jpeg(np.full((32, 32, 3), 90, np.uint8), 90)
    odd = encode_jpeg(np.full((32, 48, 3), 90, np.uint8), 90)
    sample = Sample("k1", "shard-000000.tar", {}, [good, odd, good], np.arange(3) / 25, None, None)
    assert sample.decode(np.array([0, 2, 0])).shape == (3, 32, 32, 3)
    with pytest.raises(CorruptSampleError, match=r"'k1'.*frame 1: decoded to 48x32 px, not 32x32 like frame 0"):
        sample.decode(np.array([0, 1]))
    with pytest.raises(CorruptSampleError, match="frame 1: decoded to 48x32 px, not a square crop"):
        sample.decode(np.array([1]))  # crops are square
    sof = good.index(b"\xff\xc0")  # baseline frame header: length (2), precision (1), height (2), width (2)
    huge = good[: sof + 5] + (40000).to_bytes(2, "big") * 2 + good[sof + 9 :]
    with pytest.raises(CorruptSampleError, match="frame 0: its header says 40000x40000 px, more than any face crop"):
        Sample("k2", "shard-000000.tar", {}, [huge], np.zeros(1), None, None).decode(np.zeros(16, np.int64))


Epochs = tuple[list[list[str]], list[torch.Tensor], set[int]]


def _epochs(loader: DataLoader, set_epoch: Any, epochs: int = 2) -> Epochs:
    """Keys and videos of each epoch through ``loader``, and the pids of its workers over all epochs."""
    keys, videos, pids = [], [], set()
    for epoch in range(epochs):
        set_epoch(epoch)
        batches = list(loader)
        keys.append([k for b in batches for k in b["key"]])
        videos.append(torch.cat([b["video"] for b in batches]))
        if loader.num_workers:
            pids |= {w.pid for w in loader._iterator._workers}  # type: ignore[union-attr]
    return keys, videos, pids


@pytest.mark.parametrize("start", ["fork", "spawn"])
def test_persistent_workers_see_every_epoch_of_the_indexed_dataset(shard_dir: Path, start: str) -> None:
    # workers hold a copy of the dataset made once (inherited or pickled); the epoch they draw with must
    # still follow set_epoch
    def run(workers: int) -> Epochs:
        ds = ClipDataset(shard_dir, None, train=True, clip=SMALL, audio=AUDIO, seed=3)
        sampler = GlobalBatchSampler(len(ds), 2, seed=3)
        extra: dict[str, Any] = {"persistent_workers": True, "multiprocessing_context": start} if workers else {}
        loader = DataLoader(ds, batch_sampler=sampler, num_workers=workers, **extra)

        def set_epoch(e: int) -> None:
            ds.set_epoch(e)
            sampler.set_epoch(e)

        return _epochs(loader, set_epoch)

    keys, videos, pids = run(2)
    ref_keys, ref_videos, _ = run(0)
    assert len(pids) == 2  # the same two workers served both epochs
    assert keys == ref_keys and all(torch.equal(a, b) for a, b in zip(videos, ref_videos, strict=True))
    assert keys[0] != keys[1] or not torch.equal(videos[0], videos[1])


def test_persistent_workers_see_every_epoch_of_the_stream(stream_dir: Path) -> None:
    def stream() -> Any:
        return pretrain_stream(
            [stream_dir], clip=SMALL, audio=AUDIO, seed=4, rank=0, world_size=1, samples_per_epoch=8, batch_size=2
        )

    persistent = stream()
    loader = DataLoader(persistent, batch_size=2, num_workers=2, drop_last=True, persistent_workers=True)
    keys, videos, pids = _epochs(loader, persistent.set_epoch)
    assert len(pids) == 2 and keys[0] != keys[1]
    for epoch in range(2):  # each epoch equals a fresh loader's (new workers, new copies of the stream)
        fresh = stream()
        fresh.set_epoch(epoch)
        batches = list(DataLoader(fresh, batch_size=2, num_workers=2, drop_last=True))
        assert [k for b in batches for k in b["key"]] == keys[epoch]
        assert torch.equal(torch.cat([b["video"] for b in batches]), videos[epoch])


def test_the_training_loader_keeps_its_workers_and_leaves_the_global_rng_alone(shard_dir: Path) -> None:
    ds = ClipDataset(shard_dir, None, train=True, clip=SMALL, audio=AUDIO, seed=3)
    sampler = GlobalBatchSampler(len(ds), 2, seed=3)
    loader = persistent_loader(ds, 2, torch.device("cpu"), 9, 1 << 20, batch_sampler=sampler)
    state = torch.get_rng_state()
    _, _, pids = _epochs(loader, sampler.set_epoch, epochs=3)
    assert len(pids) == 2  # two workers for three epochs
    assert torch.equal(torch.get_rng_state(), state)  # dropout's stream does not depend on the loader
