"""Fan-out of per-clip work: inline, a local process pool, or Ray tasks (``data.executor``).

:func:`run_tasks` yields ``(item, result)`` where ``result`` is the function's return value or the
exception it raised (so one bad clip never stops a stage). At most ``4 * workers`` tasks are in flight,
which bounds memory on large corpora. Worker processes are started with ``spawn`` (no fork of a parent
that holds threads or a torch runtime) and limited to one thread each for OpenCV, torch and BLAS:
parallelism comes from the processes.
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections import deque
from collections.abc import Callable, Generator, Iterator, Sequence
from itertools import islice
from typing import TYPE_CHECKING, Literal, TypeVar

if TYPE_CHECKING:
    from concurrent.futures import ProcessPoolExecutor

T = TypeVar("T")
R = TypeVar("R")

__all__ = ["limit_threads", "run_tasks"]

Executor = Literal["process", "ray"]


def limit_threads() -> None:
    """One compute thread per worker process (called in every worker before any task runs)."""
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = "1"
    os.environ.setdefault("GLOG_minloglevel", "2")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import cv2
    import torch

    cv2.setNumThreads(1)
    torch.set_num_threads(1)


def _call_limited(fn: Callable[[T], R], item: T) -> R:
    """A Ray task's body: Ray workers have no pool initializer, so each task limits its own threads."""
    limit_threads()
    return fn(item)


def run_tasks(
    fn: Callable[[T], R],
    items: Sequence[T],
    *,
    workers: int = 1,
    executor: Executor = "process",
    ordered: bool = False,
    ray_address: str | None = None,
    in_flight: int | None = None,
    retries: int = 0,
) -> Generator[tuple[T, R | BaseException], None, None]:
    """Run ``fn`` on every item; yield ``(item, result or exception)`` (input order if ``ordered``).
    Closing the generator early ends the workers (see ``_stop_on_exit``).

    ``workers == 1`` runs inline in this process (debuggable, and what tests use). ``fn`` must be a
    module-level function for the process and Ray executors. ``in_flight`` and ``retries``: Ray executor only
    (:func:`avf.runtime.ray_tasks.run_ray_tasks`).
    """
    if not items:
        return
    if executor == "ray":
        from avf.runtime.ray_tasks import run_ray_tasks

        limited = functools.partial(_call_limited, fn)
        yield from run_ray_tasks(limited, items, workers, ordered, ray_address, in_flight, retries)
    elif workers <= 1:
        for item in items:
            try:
                yield item, fn(item)
            except Exception as e:
                yield item, e
    else:
        yield from _run_pool(fn, items, workers, ordered)


def _run_pool(
    fn: Callable[[T], R], items: Sequence[T], workers: int, ordered: bool
) -> Iterator[tuple[T, R | BaseException]]:
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait

    ctx = multiprocessing.get_context("spawn")
    limit = 4 * workers
    with (
        ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=limit_threads) as pool,
        _stop_on_exit(pool),
    ):
        pending: deque[tuple[T, Future[R]]] = deque()
        it = iter(items)

        def fill() -> None:
            pending.extend((item, pool.submit(fn, item)) for item in islice(it, max(0, limit - len(pending))))

        def outcome(fut: Future[R]) -> R | BaseException:
            exc = fut.exception()
            return exc if exc is not None else fut.result()

        fill()
        while pending:
            if ordered:
                item, fut = pending.popleft()
                yield item, outcome(fut)
            else:
                done, _ = wait([f for _, f in pending], return_when=FIRST_COMPLETED)
                for pair in [p for p in pending if p[1] in done]:
                    pending.remove(pair)
                    yield pair[0], outcome(pair[1])
            fill()


@contextlib.contextmanager
def _stop_on_exit(pool: ProcessPoolExecutor) -> Iterator[None]:
    """Interrupted (SIGTERM/Ctrl-C raised in the caller, or the results abandoned): drop the queued
    tasks and end the workers now. Otherwise the pool would first run every queued task, and workers
    whose parent died go on working, then block forever (orphans writing into a re-run's outputs)."""
    try:
        yield
    except BaseException:
        # before shutdown(), which forgets them; dict() is a C-level copy, atomic under the GIL
        procs = list(dict(getattr(pool, "_processes", None) or {}).values())
        pool.shutdown(wait=False, cancel_futures=True)
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.join(timeout=10)
        raise
