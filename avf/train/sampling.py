"""Rank-aware batch samplers whose global batches do not depend on the number of workers.

With ``W`` workers, step ``s`` of epoch ``e`` uses the same global batch of indices as a single worker
would (seeded permutations per epoch, or weighted draws for a dataset mixture), and rank ``r`` takes
the ``r``-th equal slice of it. Averaged
DDP gradients then equal the single-worker gradient, so 1-worker and N-worker runs follow the same
trajectory and a resumed run replays exactly the batches it lost.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch

from avf.utils.seed import derive_seed


class GlobalBatchSampler(torch.utils.data.Sampler[list[int]]):
    """Yields this rank's slice of each global batch (drop-last, so every rank gets equal batches)."""

    def __init__(
        self,
        num_samples: int,
        global_batch: int,
        rank: int = 0,
        world_size: int = 1,
        seed: int = 0,
        shuffle: bool = True,
        weights: Sequence[float] | None = None,
        draws: int | None = None,
    ) -> None:
        """``draws``: samples per epoch (default ``num_samples``: one pass); more than ``num_samples``
        continues with the next permutations (or weighted draws)."""
        if global_batch % world_size:
            raise ValueError(f"global batch {global_batch} is not divisible by {world_size} workers")
        if num_samples < global_batch:
            raise ValueError(f"{num_samples} samples are fewer than one global batch of {global_batch}")
        self.n, self.global_batch, self.rank, self.world = num_samples, global_batch, rank, world_size
        self.draws = draws if draws is not None else num_samples
        self.seed, self.shuffle, self.epoch = seed, shuffle, 0
        self.weights = None if weights is None else np.asarray(weights, dtype=np.float64) / np.sum(weights)
        self.start_step = 0

    def set_epoch(self, epoch: int, start_step: int = 0) -> None:
        """Select the epoch's permutation; ``start_step`` skips batches already trained (resume)."""
        self.epoch, self.start_step = epoch, start_step

    def __len__(self) -> int:
        return self.draws // self.global_batch - self.start_step

    def order(self) -> np.ndarray:
        rng = np.random.default_rng(derive_seed(self.seed, "batches", self.epoch))
        if self.weights is not None:  # weighted sampling with replacement (dataset mixtures)
            return rng.choice(self.n, size=self.draws, replace=True, p=self.weights)
        passes = [rng.permutation(self.n) if self.shuffle else np.arange(self.n)]
        while len(passes) * self.n < self.draws:
            passes.append(rng.permutation(self.n) if self.shuffle else np.arange(self.n))
        return np.concatenate(passes)[: self.draws]

    def __iter__(self) -> Iterator[list[int]]:
        order = self.order()
        per_rank = self.global_batch // self.world
        for step in range(self.start_step, self.draws // self.global_batch):
            batch = order[step * self.global_batch : (step + 1) * self.global_batch]
            yield batch[self.rank * per_rank : (self.rank + 1) * per_rank].tolist()


def shard_indices(n: int, rank: int, world_size: int) -> list[int]:
    """Every index exactly once across ranks (for evaluation): rank r gets r, r+W, r+2W, ..."""
    return list(range(rank, n, world_size))
