"""Training batches decoded by Ray tasks anywhere in the cluster (``data.ingest: ray``).

Each trainer turns its share of an epoch into :class:`BatchRequest` s (which keys, in which order, with the
draws of which epoch) and :class:`RemoteBatches` runs one Ray task of one CPU per micro-batch, in order,
with ``in_flight`` of them running or done ahead of the training step. A task may run on any node with a
free CPU, CPU-only nodes included, so decoding no longer has to fit beside the GPU. The task rebuilds the
datasets once per Ray worker process from a small :class:`BatchSource`; the trainer receives the micro-batch
the DataLoader would have collated: the same items (``ClipDataset.item``), the same tensors.

Corrupt samples are dropped from their micro-batch, logged with shard, key and reason, and counted
(:attr:`RemoteBatches.skipped`): the micro-batch is smaller, but every rank still runs every step. A
micro-batch with nothing readable is an error naming its samples.

Why Ray tasks and not a Ray Data ``map``: with Ray 2.60 on a fixed-size cluster, Ray Data's resource budget
stays at zero CPUs (its autoscaling coordinator's first, empty answer is never re-read), so a map runs one
task at a time: ``python -m benchmarks.ingest`` measured 0.83-1.10x from 1 to 2 CPUs for Ray Data and
1.80-1.87x for these tasks, on the same decode function (``docs/performance.md``).
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from avf.config.data import AudioConfig, AugmentConfig, ClipConfig
from avf.data.loader import ClipDataset, collate_clips
from avf.data.parallel import run_tasks
from avf.data.shards import CorruptSampleError

__all__ = ["BatchRequest", "BatchSource", "RemoteBatches", "load_batch"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BatchSource:
    """What a decode task needs to rebuild the training datasets: hashable, a few hundred bytes pickled."""

    shard_dirs: tuple[str, ...]
    kind: Literal["finetune", "pretrain"]
    seed: int
    clip: str  # the configs as JSON (hashable)
    audio: str
    augment: str
    decode: bool = True  # False: pretraining frames stay JPEG for the training device

    @classmethod
    def of(
        cls,
        shard_dirs: Sequence[str | Path],
        kind: Literal["finetune", "pretrain"],
        seed: int,
        clip: ClipConfig,
        audio: AudioConfig,
        augment: AugmentConfig,
        decode: bool = True,
    ) -> BatchSource:
        dump = functools.partial(json.dumps, sort_keys=True)
        return cls(
            tuple(str(d) for d in shard_dirs),
            kind,
            seed,
            dump(clip.model_dump()),
            dump(audio.model_dump()),
            dump(augment.model_dump()),
            decode,
        )


@dataclass(frozen=True)
class BatchRequest:
    """One micro-batch: ``(dataset number in the source, key)`` pairs in batch order, drawn as in ``epoch``."""

    epoch: int
    samples: tuple[tuple[int, str], ...]


@functools.lru_cache(maxsize=4)
def _datasets(source: BatchSource) -> list[ClipDataset]:
    """The source's datasets over every key of their indexes, built once per Ray worker process."""
    clip = ClipConfig.model_validate_json(source.clip)
    audio = AudioConfig.model_validate_json(source.audio)
    augment = AugmentConfig.model_validate_json(source.augment)
    pretrain = source.kind == "pretrain"
    return [
        ClipDataset(
            d, train=True, clip=clip, audio=audio, augment=augment, seed=source.seed, pretrain=pretrain,
            decode=source.decode,
        )
        for d in source.shard_dirs
    ]  # fmt: skip


def load_batch(source: BatchSource, request: BatchRequest) -> dict[str, Any]:
    """The collated micro-batch of ``request`` (tensors as numpy arrays), plus ``"skipped"``: one line per
    corrupt sample left out."""
    datasets = _datasets(source)
    items, skipped = [], []
    for number, key in request.samples:
        try:
            items.append(datasets[number].item(key, request.epoch))
        except CorruptSampleError as e:
            skipped.append(str(e))
    if not items:
        raise CorruptSampleError(
            source.shard_dirs[request.samples[0][0]],
            request.samples[0][1],
            f"every sample of its micro-batch is corrupt: {'; '.join(skipped)}",
        )
    # numpy crosses the object store without pickling the bytes: the trainer maps them instead of unpickling
    batch = collate_clips(items)
    return {k: v.numpy() if isinstance(v, torch.Tensor) else v for k, v in batch.items()} | {"skipped": skipped}


class RemoteBatches:
    """Iterates one epoch's micro-batches, decoded by Ray tasks in request order; counts corrupt samples."""

    def __init__(self, source: BatchSource, in_flight: int, address: str | None = None) -> None:
        self.source, self.in_flight, self.address = source, in_flight, address
        self.skipped = 0

    def __call__(self, requests: Sequence[BatchRequest]) -> Iterator[dict[str, Any]]:
        fn = functools.partial(load_batch, self.source)
        # a task whose worker or node dies is rerun; one that raises (a corrupt micro-batch) is not
        results = run_tasks(
            fn,
            list(requests),
            workers=self.in_flight,
            executor="ray",
            ordered=True,
            ray_address=self.address,
            in_flight=self.in_flight,
            retries=3,
        )
        for _, batch in results:
            if isinstance(batch, BaseException):
                raise batch
            for line in batch.pop("skipped"):
                self.skipped += 1
                log.warning("skipping corrupt sample: %s", line)
            # writable tensors from the object store's read-only arrays (an in-place mixup on the CPU writes)
            yield {k: torch.from_numpy(v.copy()) if isinstance(v, np.ndarray) else v for k, v in batch.items()}
