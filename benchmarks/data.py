"""The data section: ``benchmarks/preprocess.py``'s ``main`` in a child process.

It pins torch and OpenCV to one thread and sets ``OMP_NUM_THREADS`` on import, so it runs in a spawned
process to leave the model benchmarks' threads alone.
"""

from __future__ import annotations

import contextlib
import io
import multiprocessing
from typing import Any


def _main(argv: list[str]) -> dict[str, Any]:
    from benchmarks import preprocess

    with contextlib.redirect_stdout(io.StringIO()):
        return preprocess.main(argv)


def run(argv: list[str]) -> dict[str, Any]:
    """``preprocess.main(argv)`` in a spawned child; its result dict."""
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(_main, (argv,))
