"""Shared memory for DataLoader workers: they hand every batch to the trainer through ``/dev/shm``, and a
full ``/dev/shm`` kills them with SIGBUS halfway through an epoch, so loaders size their prefetch first."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

log = logging.getLogger(__name__)

PREFETCH = 4  # batches each DataLoader worker holds ahead: keeps the step fed


def shared_memory_free() -> int | None:
    """Free bytes of ``/dev/shm`` now (None where there is none)."""
    return shutil.disk_usage("/dev/shm").free if Path("/dev/shm").is_dir() else None


def fitting_prefetch(num_workers: int, batch_bytes: int, free_bytes: int | None, ranks: int = 1) -> int:
    """Batches per worker to prefetch: :data:`PREFETCH` where ``num_workers`` x that many batches take at most
    half of this rank's share of the free shared memory (``ranks`` training processes on the node share it;
    the other half is headroom for Ray's object store, pinning and the batch being trained), fewer with a
    warning otherwise. Raises ``ValueError`` where even one batch per worker does not fit.

    ``free_bytes`` is a snapshot taken when the loader starts, not a reservation."""
    if free_bytes is None:
        return PREFETCH
    budget = free_bytes // 2 // max(1, ranks)
    fit = budget // (num_workers * batch_bytes)
    need = f"{num_workers} DataLoader workers x {{}} batch(es) of {batch_bytes / 2**30:.2f} GiB"
    share = f"half of the {free_bytes / 2**30:.1f} GiB free in /dev/shm" + (
        f", shared by {ranks} ranks" if ranks > 1 else ""
    )
    if fit < 1:
        raise ValueError(
            f"shared memory too small: {need.format(1)} need {num_workers * batch_bytes / 2**30:.1f} GiB, more than "
            f"{share}. Use more accum_steps (smaller micro-batches), fewer num_workers, or a larger /dev/shm "
            "(docker --shm-size)."
        )
    if fit < PREFETCH:
        log.warning(
            "prefetching %d batch(es) per DataLoader worker instead of %d: %s fit in %s",
            fit,
            PREFETCH,
            need.format(fit),
            share,
        )
    return int(min(fit, PREFETCH))


def prefetch_factor(num_workers: int, batch_bytes: int, ranks: int = 1) -> int | None:
    """A DataLoader's ``prefetch_factor``: None without worker processes, else :func:`fitting_prefetch` on
    the shared memory free now."""
    return fitting_prefetch(num_workers, batch_bytes, shared_memory_free(), ranks) if num_workers else None
