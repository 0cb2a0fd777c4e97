"""The training processes' heap setting: large blocks are unmapped when freed, whatever came before."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

CHILD = textwrap.dedent(
    """
    import gc, sys
    import numpy as np
    from avf.utils.heap import limit_heap_slack

    def rss_mib():
        for line in open("/proc/self/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024

    applied = limit_heap_slack() if sys.argv[1] == "limit" else False
    # one 6 MiB block freed: without the setting glibc now serves blocks of this size from the heap
    np.ones(6 << 20, np.uint8)
    gc.collect()
    base = rss_mib()
    small = []
    blocks = []
    for _ in range(24):  # 144 MiB of activations-like blocks, small live objects allocated between them
        blocks.append(np.ones(6 << 20, np.uint8))
        small.append(np.ones(4096, np.uint8))
    del blocks
    gc.collect()
    print(applied, round(rss_mib() - base))
    """
)


def _run(mode: str, env: dict[str, str] | None = None) -> tuple[bool, int]:
    if env is None:  # glibc's own default, whatever the calling environment set
        env = {k: v for k, v in os.environ.items() if k != "MALLOC_MMAP_THRESHOLD_"}
    out = subprocess.run([sys.executable, "-c", CHILD, mode], capture_output=True, text=True, env=env, check=True)
    applied, kept = out.stdout.split()
    return applied == "True", int(kept)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt and /proc are Linux")
def test_freed_large_blocks_go_back_to_the_kernel() -> None:
    applied, kept = _run("limit")
    assert applied
    assert kept < 16, f"{kept} MiB of 144 freed MiB stayed resident"
    _, kept_default = _run("default")
    assert kept_default > 64, "glibc's dynamic threshold should have kept the freed blocks in the heap"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt and /proc are Linux")
def test_a_users_own_threshold_is_left_alone() -> None:
    applied, _ = _run("limit", env={**os.environ, "MALLOC_MMAP_THRESHOLD_": "131072"})
    assert not applied
