"""Model inputs from shards: an indexed dataset (fine-tuning, evaluation) and a pretraining stream.

Contract (the training code relies on these names and shapes)::

    ds = ClipDataset(shard_dir, keys, *, train, clip, audio, seed=0, augment=None, pretrain=False)
    ds[i] -> {"video": u8[T, S, S, 3], "erase": int64[5], "audio": f32[1, 256, 128], "label": int64 scalar
              (f32[D] targets for regression, -1 when unlabelled), "key": str, "dataset": str}
    train=False: "video": u8[V, T, S, S, 3], "audio": f32[V, 1, 256, 128], V = clip.test_views (no "erase")
    pretrain=True: the stream's items below, by key; decode=False (pretrain only): "jpeg" (u8[bytes], the T
    frames back to back), "jpeg_sizes" (int64[T]) and "crop" (int64[4]) instead of "video", batched by
    collate_clips and decoded on the device
    ds.keys (index order), ds.set_epoch(e), ds.item(key, epoch) (any key of the index, any epoch)

    it = pretrain_stream(shard_dirs, *, clip, audio, seed, rank, world_size, samples_per_epoch,
                         augment=None, num_workers=None, shuffle_buffer=256, batch_size=1)
    -> IterableDataset yielding {"video": u8[T, S, S, 3], "audio": f32[1, 256, 128], "key": str}

Video stays uint8 until the device: the training step (and evaluation, per view) turns a batch into the
model's normalized float input with :func:`avf.data.transforms.to_model_input` (``erase``: the clip's
random-erasing box).

Frame windows (T = ``clip.num_frames`` frames every ``clip.sampling_rate`` frames, a span of
W = T * stride frames): in training one window at a uniformly random start; a clip shorter than W
takes every ``stride``-th frame from the start, padded with its last frame. Test views are the
official protocol: every ``stride``-th frame, ``V`` windows of T at evenly spaced starts (one spatial
crop: the official two crops are identical). The audio of a window is the span from its first
frame's timestamp to the timestamp ``stride`` frames after its last real frame (extrapolated at the
clip's median frame step past the end): by time, never by relative position (``avf.data.audio``).

Randomness: a sample's draws come from ``numpy.random.default_rng((seed, epoch, crc32(key)))``, so
they depend neither on the DataLoader worker nor on which other keys are loaded; ``set_epoch``
changes them. Test views are deterministic.

The streaming reader splits shards (not samples) over ``world_size * num_workers`` readers after a
seeded shuffle per epoch, reads each shard sequentially through a shuffle buffer and cycles over its
shards until it has yielded its quota: every rank yields the whole ``batch_size`` batches of
``samples_per_epoch // world_size`` samples per epoch (default: the number of samples in the shards),
dealt to its DataLoader workers batch by batch, so every rank runs the same number of batches and no
worker holds a partial one (the role of WebDataset's ``resampled=True`` + ``with_epoch``). Fewer shards than readers
is an error (a reader without data would hang distributed training). Corrupt samples: the indexed
reader raises :class:`~avf.data.shards.CorruptSampleError` (naming shard and key); the stream skips
them with a warning naming shard and key, counts them in ``skipped`` (per process: each DataLoader
worker has its own copy), still meets its quota from the other samples, and fails if a reader's
shards give nothing usable or more than 100 bad samples come in a row.
"""

from __future__ import annotations

import json
import logging
import zlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, IterableDataset, default_collate, get_worker_info

from avf.config.data import AudioConfig, AugmentConfig, ClipConfig
from avf.data.audio import fbank_window, window_from_waveform
from avf.data.shards import CorruptSampleError, ShardIndex, iter_shard, load_npy, read_sample
from avf.data.transforms import ClipTransform, audio_gain
from avf.data.video import decode_jpeg, jpeg_size

__all__ = [
    "ClipDataset",
    "PretrainStream",
    "Sample",
    "SharedEpoch",
    "collate_clips",
    "item_bytes",
    "pretrain_item",
    "pretrain_stream",
    "train_indices",
    "unpack_sample",
    "view_indices",
    "window_span",
]

log = logging.getLogger(__name__)


# ------------------------------------------------------------------------------------------ windows


def train_indices(n: int, num_frames: int, stride: int, rng: np.random.Generator) -> np.ndarray:
    """Frame indices ``int64 [num_frames]`` of one training window of an ``n``-frame clip."""
    span = num_frames * stride
    if n >= span:
        start = int(rng.integers(0, n - span + 1))
        return start + stride * np.arange(num_frames)
    idx = np.arange(0, n, stride)[:num_frames]
    return np.concatenate([idx, np.full(num_frames - len(idx), idx[-1])])


def view_indices(n: int, num_frames: int, stride: int, views: int) -> list[np.ndarray]:
    """``views`` windows over every ``stride``-th frame at evenly spaced starts (official test protocol)."""
    sampled = np.arange(0, n, stride)
    if len(sampled) < num_frames:
        sampled = np.concatenate([sampled, np.full(num_frames - len(sampled), sampled[-1])])
    extra = len(sampled) - num_frames
    starts = [extra // 2] if views == 1 else [int(v * extra / (views - 1)) for v in range(views)]
    return [sampled[s : s + num_frames] for s in starts]


def window_span(times: np.ndarray, indices: np.ndarray, stride: int) -> tuple[float, float]:
    """Audio span (seconds) of a window: first frame's time to ``stride`` frames after the last real one."""
    n = len(times)
    step = float(np.median(np.diff(times))) if n > 1 else 0.04
    last = int(indices.max()) + stride
    end = float(times[last]) if last < n else float(times[-1]) + (last - (n - 1)) * step
    return float(times[int(indices[0])]), end


# ------------------------------------------------------------------------------------------ samples


MAX_FRAME_SIDE = 2048  # px; face crops are data.face.size, at most 512


@dataclass
class Sample:
    """A sample's parsed members (frames still JPEG-encoded)."""

    key: str
    shard: str
    meta: dict[str, Any]
    frames: list[bytes]
    times: np.ndarray
    fbank: np.ndarray | None  # float16 [F, mel]
    pcm: np.ndarray | None  # int16 [S]

    def decode(self, indices: np.ndarray) -> np.ndarray:
        """RGB ``uint8 [len(indices), H, W, 3]``: each distinct frame decoded once, straight into its first slot.

        Face crops are square and all of one size: a frame whose header says otherwise (a damaged JPEG
        header) is a corrupt sample, not a crash in the transforms.
        """
        idx = indices.tolist()
        out: np.ndarray | None = None
        slot_of: dict[int, int] = {}
        for slot, i in enumerate(idx):
            if i in slot_of:
                continue
            try:
                height, width = jpeg_size(self.frames[i])
                if max(height, width) > MAX_FRAME_SIDE:  # a damaged header: never allocate T frames of it
                    raise ValueError(f"its header says {width}x{height} px, more than any face crop")
                if out is None and height == width:
                    out = np.empty((len(idx), height, width, 3), np.uint8)
                if out is None or (height, width) != out.shape[1:3]:
                    want = (
                        f"not {out.shape[2]}x{out.shape[1]} like frame {idx[0]}"
                        if out is not None
                        else "not a square crop"
                    )
                    raise CorruptSampleError(self.shard, self.key, f"frame {i}: decoded to {width}x{height} px, {want}")
                decode_jpeg(self.frames[i], out[slot])
            except ValueError as e:
                raise CorruptSampleError(self.shard, self.key, f"frame {i}: {e}") from None
            slot_of[i] = slot
        assert out is not None, "a window has at least one frame"
        for slot, i in enumerate(idx):
            if slot_of[i] != slot:
                out[slot] = out[slot_of[i]]
        return out

    def label(self) -> torch.Tensor:
        targets = self.meta.get("targets")
        if targets is not None:
            return torch.tensor(targets, dtype=torch.float32)
        return torch.tensor(int(self.meta.get("label", -1)), dtype=torch.int64)


def unpack_sample(members: Mapping[str, bytes], key: str, shard: str | Path = "<memory>") -> Sample:
    """Parse and check the members of a sample (see ``avf.data.shards`` for the layout)."""
    try:
        meta = json.loads(members["meta.json"])
    except (KeyError, ValueError) as e:
        raise CorruptSampleError(shard, key, f"bad meta.json: {e}") from None
    names = sorted((n for n in members if n.endswith(".jpg")), key=lambda n: int(n.split(".")[0]))
    frames = [members[n] for n in names]
    times = np.asarray(meta.get("frame_times", []), dtype=np.float64)
    if not frames or len(frames) != len(times):
        raise CorruptSampleError(shard, key, f"{len(frames)} frame members but {len(times)} frame times")
    fbank = pcm = None
    try:
        if "fbank.npy" in members:
            fbank = load_npy(members["fbank.npy"])
        elif "pcm.npy" in members:
            pcm = load_npy(members["pcm.npy"])
        else:
            raise CorruptSampleError(shard, key, "no fbank.npy or pcm.npy member")
    except ValueError as e:
        raise CorruptSampleError(shard, key, f"bad audio member: {e}") from None
    return Sample(key, str(shard), meta, frames, times, fbank, pcm)


def _audio(sample: Sample, start: float, end: float, cfg: AudioConfig, gain: float | None) -> torch.Tensor:
    if sample.fbank is not None:
        if sample.fbank.ndim != 2 or sample.fbank.shape[1] != cfg.num_mel_bins:
            raise CorruptSampleError(
                sample.shard, sample.key, f"fbank has shape {sample.fbank.shape}, expected [*, {cfg.num_mel_bins}]"
            )
        return fbank_window(sample.fbank, start, end, cfg, gain)
    assert sample.pcm is not None
    return window_from_waveform(sample.pcm.astype(np.float32) / 32768.0, start, end, cfg, gain)


def item_bytes(clip: ClipConfig, audio: AudioConfig, train: bool = True) -> int:
    """Tensor bytes of one item as :class:`ClipDataset` yields it: uint8 video [T, S, S, 3] and float32 audio
    [1, F, M] (the 5 erase numbers aside), for evaluation for each of V views."""
    video, spec = 3 * clip.num_frames * clip.image_size**2, audio.target_frames * audio.num_mel_bins
    return (video + 4 * spec) * (1 if train else clip.test_views)


def _key_rng(seed: int, epoch: int, key: str) -> np.random.Generator:
    return np.random.default_rng([seed, epoch, zlib.crc32(key.encode())])


def pretrain_item(
    sample: Sample,
    seed: int,
    epoch: int,
    clip: ClipConfig,
    audio: AudioConfig,
    augment: AugmentConfig,
    transform: ClipTransform,
    decode: bool = True,
) -> dict[str, Any]:
    """A pretraining item ``{"video": u8[T, S, S, 3], "audio": f32[1, F, M], "key"}``: a random window, a
    multi-scale crop and an audio gain, all drawn from ``(seed, epoch, key)``.

    ``decode=False`` leaves the frames to the training device (``pretrain.decode: device``): instead of
    ``"video"`` the item holds ``"jpeg"`` (the window's T frames back to back, ``uint8 [bytes]``),
    ``"jpeg_sizes"`` (``int64 [T]``) and ``"crop"`` (``int64 [4]``, the same box), for
    :func:`avf.data.transforms.decode_on_device`. Only the first frame's header is read here (for the box).
    """
    rng = _key_rng(seed, epoch, sample.key)
    idx = train_indices(len(sample.frames), clip.num_frames, clip.sampling_rate, rng)
    if decode:
        frames: dict[str, Any] = {"video": transform.pretrain(sample.decode(idx), rng)}
    else:
        try:
            height, width = jpeg_size(sample.frames[int(idx[0])])
        except ValueError as e:
            raise CorruptSampleError(sample.shard, sample.key, f"frame {idx[0]}: {e}") from None
        if height != width:
            raise CorruptSampleError(sample.shard, sample.key, f"frame {idx[0]}: {width}x{height} px, not square")
        window = [sample.frames[i] for i in idx.tolist()]
        frames = {
            "jpeg": torch.frombuffer(bytearray(b"".join(window)), dtype=torch.uint8),
            "jpeg_sizes": torch.tensor([len(f) for f in window]),
            "crop": torch.tensor(transform.pretrain_crop(rng, height, width)),
        }
    gain = audio_gain(rng, augment.gain_beta) if augment.audio_gain else None
    spec = _audio(sample, *window_span(sample.times, idx, clip.sampling_rate), audio, gain)
    return {**frames, "audio": spec, "key": sample.key}


def collate_clips(items: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """``default_collate``, except for undecoded frames: the clips' ``"jpeg"`` bytes are concatenated into one
    ``uint8`` buffer (one shared-memory segment per batch, not one per frame); ``"jpeg_sizes"`` ``[B, T]`` cuts it."""
    if not items or "jpeg" not in items[0]:
        return default_collate(items)
    rest = default_collate([{k: v for k, v in item.items() if k != "jpeg"} for item in items])
    return {**rest, "jpeg": torch.cat([item["jpeg"] for item in items])}


class SharedEpoch:
    """An epoch number in shared memory: persistent DataLoader workers (forked or spawned) hold a copy of
    the dataset made once, and read the number the main process set before each epoch's iterator."""

    def __init__(self) -> None:
        self._value = torch.zeros((), dtype=torch.int64).share_memory_()

    def get(self) -> int:
        return int(self._value)

    def set(self, epoch: int) -> None:
        self._value.fill_(epoch)


# ------------------------------------------------------------------------------------------ indexed


class ClipDataset(Dataset[dict[str, Any]]):
    """Map-style dataset over one shard directory: every selected clip exactly once (random access)."""

    def __init__(
        self,
        shard_dir: str | Path,
        keys: Sequence[str] | None = None,
        *,
        train: bool,
        clip: ClipConfig,
        audio: AudioConfig,
        seed: int = 0,
        augment: AugmentConfig | None = None,
        pretrain: bool = False,
        decode: bool = True,
    ) -> None:
        if pretrain and not train:
            raise ValueError("pretrain items are training items: pretrain=True needs train=True")
        if not decode and not pretrain:
            raise ValueError("only pretraining items can leave their frames undecoded (decode=False)")
        self.shard_dir = Path(shard_dir)
        self.index = ShardIndex.load(self.shard_dir)
        _check_index(self.index, audio, self.shard_dir)
        self._loc = self.index.locate()
        if keys is None:
            self.keys = self.index.keys
        else:
            missing = [k for k in keys if k not in self._loc]
            if missing:
                raise KeyError(f"{len(missing)} key(s) not in {self.shard_dir / 'index.json'}, e.g. {missing[:3]}")
            wanted = set(keys)
            self.keys = [k for k in self.index.keys if k in wanted]
        self.train, self.pretrain, self.decode = train, pretrain, decode
        self.clip = clip
        self.audio = audio
        self.seed = seed
        self._epoch = SharedEpoch()
        self.augment = augment or AugmentConfig()
        self.transform = ClipTransform(clip.image_size, self.augment)

    def __len__(self) -> int:
        return len(self.keys)

    @property
    def epoch(self) -> int:
        return self._epoch.get()

    def set_epoch(self, epoch: int) -> None:
        """Re-seed train-time randomness: call before each epoch's DataLoader iterator starts (persistent
        workers included: the epoch lives in shared memory)."""
        self._epoch.set(epoch)

    def load(self, key: str) -> Sample:
        shard_no, offset, size = self._loc[key]
        path = self.shard_dir / self.index.shards[shard_no].name
        return unpack_sample(read_sample(path, offset, size, key), key, path)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return self.item(self.keys[i], self.epoch)

    def item(self, key: str, epoch: int) -> dict[str, Any]:
        """The item of ``key`` (any key of the shard index) with the draws of ``epoch``."""
        if key not in self._loc:
            raise KeyError(f"{key!r} is not in {self.shard_dir / 'index.json'}")
        sample = self.load(key)
        if self.pretrain:
            return pretrain_item(
                sample, self.seed, epoch, self.clip, self.audio, self.augment, self.transform, self.decode
            )
        c = self.clip
        n = len(sample.frames)
        if self.train:
            rng = _key_rng(self.seed, epoch, key)
            idx = train_indices(n, c.num_frames, c.sampling_rate, rng)
            video, erase = self.transform.finetune(sample.decode(idx), rng)
            extra = {"erase": erase}
            gain = audio_gain(rng, self.augment.gain_beta) if self.augment.audio_gain else None
            audio = _audio(sample, *window_span(sample.times, idx, c.sampling_rate), self.audio, gain)
        else:
            views = view_indices(n, c.num_frames, c.sampling_rate, c.test_views)
            video = torch.stack([self.transform.eval(sample.decode(v)) for v in views])
            audio = torch.stack(
                [_audio(sample, *window_span(sample.times, v, c.sampling_rate), self.audio, None) for v in views]
            )
            extra = {}
        return {
            "video": video,
            "audio": audio,
            "label": sample.label(),
            "key": key,
            "dataset": str(sample.meta.get("dataset", self.index.dataset)),
            **extra,
        }


def _check_index(index: ShardIndex, audio: AudioConfig, where: Path) -> None:
    bins = index.extra.get("num_mel_bins")
    if index.audio == "fbank" and bins is not None and int(bins) != audio.num_mel_bins:
        raise ValueError(
            f"{where}: shards hold {bins}-bin fbank but data.audio.num_mel_bins is {audio.num_mel_bins}; "
            "rebuild the shards"
        )


# ---------------------------------------------------------------------------------------- streaming


class PretrainStream(IterableDataset[dict[str, Any]]):
    """Shuffled, rank- and worker-split, equal-length stream over shards (see the module docstring)."""

    def __init__(
        self,
        shard_dirs: Sequence[str | Path],
        *,
        clip: ClipConfig,
        audio: AudioConfig,
        seed: int,
        rank: int,
        world_size: int,
        samples_per_epoch: int | None = None,
        augment: AugmentConfig | None = None,
        num_workers: int | None = None,
        shuffle_buffer: int = 256,
        batch_size: int = 1,
        decode: bool = True,
    ) -> None:
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside world_size {world_size}")
        self.shards: list[tuple[Path, int]] = []
        for d in shard_dirs:
            index = ShardIndex.load(d)
            _check_index(index, audio, Path(d))
            self.shards += [(Path(d) / s.name, s.num_samples) for s in index.shards if s.num_samples > 0]
        if not self.shards:
            raise ValueError(f"no non-empty shards in {[str(d) for d in shard_dirs]}")
        self.total = sum(n for _, n in self.shards)
        self.samples_per_epoch = samples_per_epoch if samples_per_epoch is not None else self.total
        if self.samples_per_epoch < world_size:
            raise ValueError(f"samples_per_epoch={self.samples_per_epoch} is smaller than world_size={world_size}")
        self.clip, self.audio, self.seed = clip, audio, seed
        self.rank, self.world_size = rank, world_size
        self.augment = augment or AugmentConfig()
        self.transform = ClipTransform(clip.image_size, self.augment)
        self.shuffle_buffer = max(1, shuffle_buffer)
        self.batch_size = max(1, batch_size)
        self.decode = decode
        if self.samples_per_epoch // world_size < self.batch_size:
            raise ValueError(
                f"samples_per_epoch={self.samples_per_epoch} gives each of {world_size} rank(s) fewer samples "
                f"than one batch of {self.batch_size}"
            )
        self._epoch = SharedEpoch()
        self.skipped = 0
        if num_workers is not None:
            self.check_readers(max(1, num_workers))

    def __len__(self) -> int:
        """Samples this rank yields per epoch (equal on every rank)."""
        return self.samples_per_epoch // self.world_size

    @property
    def epoch(self) -> int:
        return self._epoch.get()

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch's shard order and draws; persistent DataLoader workers see it (shared memory)."""
        self._epoch.set(epoch)

    def check_readers(self, num_workers: int) -> None:
        readers = self.world_size * num_workers
        if len(self.shards) < readers:
            raise ValueError(
                f"{len(self.shards)} shard(s) for {readers} readers (world_size {self.world_size} x "
                f"{num_workers} DataLoader workers): every reader needs at least one shard. Write more, "
                "smaller shards (data.shards.max_shard_count) or use fewer workers."
            )

    def _quota(self, worker: int, num_workers: int) -> int:
        """Samples this DataLoader worker yields: whole batches of ``batch_size``, because the DataLoader
        batches (and drops the last partial batch) per worker: the rank's batches are dealt to its workers."""
        batches = self.samples_per_epoch // self.world_size // self.batch_size
        return self.batch_size * (batches // num_workers + (1 if worker < batches % num_workers else 0))

    def assigned_shards(self, worker: int, num_workers: int, epoch: int | None = None) -> list[Path]:
        """This reader's shards for ``epoch`` (default: the current one): a seeded permutation, dealt round-robin."""
        readers = self.world_size * num_workers
        epoch = self.epoch if epoch is None else epoch
        order = np.random.default_rng([self.seed, epoch]).permutation(len(self.shards))
        reader = self.rank * num_workers + worker
        return [self.shards[i][0] for i in order[reader::readers]]

    def _raw(self, shards: list[Path], rng: np.random.Generator) -> Iterator[tuple[str, Path, Any]]:
        """Samples of ``shards`` through a shuffle buffer, cycling over the shards forever."""
        buffer: list[tuple[str, Path, Any]] = []
        cycle = 0
        while True:
            good = 0
            for shard in [shards[i] for i in rng.permutation(len(shards))]:
                for key, members in iter_shard(shard):
                    if isinstance(members, CorruptSampleError):
                        self.skipped += 1
                        log.warning("skipping corrupt sample: %s", members)
                        continue
                    good += 1
                    buffer.append((key, shard, members))
                    if len(buffer) >= self.shuffle_buffer:
                        yield buffer.pop(int(rng.integers(len(buffer))))
            if good == 0 and not buffer:
                raise RuntimeError(f"no readable samples in shards {[str(s) for s in shards]}")
            if cycle == 0:  # drain the buffer at the end of the first pass: one epoch ~ one pass
                while buffer:
                    yield buffer.pop(int(rng.integers(len(buffer))))
            cycle += 1

    def __iter__(self) -> Iterator[dict[str, Any]]:
        info = get_worker_info()
        worker, num_workers = (info.id, info.num_workers) if info is not None else (0, 1)
        self.check_readers(num_workers)
        epoch = self.epoch
        shards = self.assigned_shards(worker, num_workers, epoch)
        quota = self._quota(worker, num_workers)
        rng = np.random.default_rng([self.seed, epoch, self.rank, worker])
        produced = 0
        consecutive_bad = 0
        for key, shard, members in self._raw(shards, rng):
            if produced >= quota:
                return
            try:
                sample = unpack_sample(members, key, shard)
                item = pretrain_item(
                    sample, self.seed, epoch, self.clip, self.audio, self.augment, self.transform, self.decode
                )
            except CorruptSampleError as e:
                self.skipped += 1
                consecutive_bad += 1
                log.warning("skipping corrupt sample: %s", e)
                if consecutive_bad > 100:
                    raise RuntimeError(f"more than 100 corrupt samples in a row in {shards}") from e
                continue
            consecutive_bad = 0
            produced += 1
            yield item


def pretrain_stream(
    shard_dirs: Sequence[str | Path],
    *,
    clip: ClipConfig,
    audio: AudioConfig,
    seed: int,
    rank: int,
    world_size: int,
    samples_per_epoch: int | None,
    augment: AugmentConfig | None = None,
    num_workers: int | None = None,
    shuffle_buffer: int = 256,
    batch_size: int = 1,
    decode: bool = True,
) -> PretrainStream:
    """The pretraining stream (see :class:`PretrainStream`); ``num_workers`` checks shard counts now,
    ``batch_size`` (the DataLoader's) keeps every worker's share a whole number of batches, ``decode=False``
    leaves the frames to the device (:func:`pretrain_item`)."""
    return PretrainStream(
        shard_dirs,
        clip=clip,
        audio=audio,
        seed=seed,
        rank=rank,
        world_size=world_size,
        samples_per_epoch=samples_per_epoch,
        augment=augment,
        num_workers=num_workers,
        shuffle_buffer=shuffle_buffer,
        batch_size=batch_size,
        decode=decode,
    )
