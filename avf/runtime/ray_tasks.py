"""Fan-out of independent calls ``fn(item)`` as Ray tasks, with at most ``4 * CPUs`` of them in flight (or a
given number: training batches bound the object store memory they hold)."""

from __future__ import annotations

import contextlib
import os
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from itertools import islice
from typing import TypeVar

from avf.runtime.cluster import loopback_only

T = TypeVar("T")
R = TypeVar("R")

__all__ = ["run_ray_tasks"]


def run_ray_tasks(
    fn: Callable[[T], R],
    items: Sequence[T],
    workers: int,
    ordered: bool,
    address: str | None,
    in_flight: int | None = None,
    retries: int = 0,
) -> Iterator[tuple[T, R | BaseException]]:
    """Yield ``(item, fn(item) or the exception it raised)`` (input order if ``ordered``), one CPU per task.

    ``in_flight`` tasks at most (default ``4 * max(workers, free CPUs)``); ``retries``: how often Ray reruns a
    task whose worker process or node died (an exception raised by ``fn`` is never retried).

    Joins ``address`` / ``RAY_ADDRESS`` or starts a private cluster on 127.0.0.1. Interrupted or abandoned,
    the queued tasks are dropped and the running ones killed.
    """
    import ray

    if not ray.is_initialized():
        # no cluster to join: the local one Ray starts listens on 127.0.0.1 only (no auth on it)
        private = not (address or os.environ.get("RAY_ADDRESS"))
        with loopback_only() if private else contextlib.nullcontext():
            ray.init(address=address, ignore_reinit_error=True, include_dashboard=False, log_to_driver=False)

    def task(item: T) -> R:  # ray.remote takes functions only, fn may be any callable (a partial)
        return fn(item)

    remote = ray.remote(num_cpus=1, max_retries=retries)(task)
    limit = in_flight or 4 * max(workers, int(ray.available_resources().get("CPU", workers)))
    pending: deque[tuple[T, ray.ObjectRef]] = deque()
    it = iter(items)

    def fill() -> None:
        pending.extend((item, remote.remote(item)) for item in islice(it, max(0, limit - len(pending))))

    def outcome(ref: ray.ObjectRef) -> R | BaseException:
        try:
            return ray.get(ref)
        except ray.exceptions.RayTaskError as e:
            cause = e.as_instanceof_cause()
            return cause if isinstance(cause, BaseException) else e
        except ray.exceptions.RayError as e:
            return e

    fill()
    try:
        while pending:
            if ordered:
                item, ref = pending[0]
                result = outcome(ref)  # still pending while awaited, so an interruption here cancels it
                pending.popleft()
            else:
                ready, _ = ray.wait([r for _, r in pending], num_returns=1)
                item, ref = next(p for p in pending if p[1] == ready[0])
                pending.remove((item, ref))
                result = outcome(ref)
            fill()  # before handing the result over: the consumer's time overlaps ``in_flight`` tasks, not one less
            yield item, result
    except BaseException:
        # interrupted or abandoned: kill the running tasks' workers too (a queued task never starts)
        for _, ref in pending:
            with contextlib.suppress(Exception):
                ray.cancel(ref, force=True)
        raise
