"""DataLoader prefetch within shared memory: the README's GPU recipe fits the ``/dev/shm`` that ``infra/ray/``
gives each worker, and a budget that cannot hold one batch per worker is a clear error, not a SIGBUS."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest
import yaml

from avf.config import parse_params
from avf.data.loader import item_bytes
from avf.data.shm import PREFETCH, fitting_prefetch

ROOT = Path(__file__).resolve().parents[2]
GiB = 2**30


def _gpu_recipe() -> dict:
    """The YAML block after "**Sizes and GPUs.**" in the README, merged into params.yaml."""
    text = (ROOT / "README.md").read_text()
    block = re.search(r"\*\*Sizes and GPUs\.\*\*.*?```yaml\n(.*?)```", text, re.S)
    assert block, "README: the GPU recipe block is gone"
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    for section, values in yaml.safe_load(block.group(1)).items():
        raw[section] = {**raw.get(section, {}), **values}
    return raw


def _shm_sizes() -> list[int]:
    """Every /dev/shm size the cluster configs set (docker --shm-size and Kubernetes emptyDir limits)."""
    sizes = []
    for path in (ROOT / "infra" / "ray").glob("*.yaml"):
        text = path.read_text()
        sizes += [int(n) * GiB for n in re.findall(r"--shm-size=(\d+)g", text)]
        sizes += [int(n) * GiB for n in re.findall(r"medium: Memory, sizeLimit: (\d+)Gi", text)]
    return sizes


def test_the_readme_gpu_recipe_prefetches_fully_within_each_workers_shared_memory() -> None:
    params = parse_params(_gpu_recipe(), "README GPU recipe")
    cfg = params.pretrain
    micro = cfg.batch_size // cfg.accum_steps // params.ray.num_workers
    batch = micro * item_bytes(params.data.clip, params.data.audio)
    assert micro == 164 and batch / GiB == pytest.approx(0.208, abs=1e-3)  # the README's arithmetic
    sizes = _shm_sizes()
    assert len(sizes) >= 3, "infra/ray/ no longer sets the shared memory of its containers"
    gpu_worker_shm = max(sizes)  # the GPU workers' (the CPU head gets less)
    assert gpu_worker_shm == 16 * GiB
    assert fitting_prefetch(cfg.num_workers, batch, gpu_worker_shm) == PREFETCH
    # the same clips as float32 (the model input) would not fit 4 deep: fewer, with a warning, not a crash
    clip = params.data.clip
    as_float = micro * 4 * (3 * clip.num_frames * clip.image_size**2 + params.data.audio.target_frames * 128)
    assert fitting_prefetch(cfg.num_workers, as_float, gpu_worker_shm) == 1


def test_a_smaller_budget_prefetches_less_and_says_so(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="avf.data.shm"):
        assert fitting_prefetch(8, GiB // 4, 8 * GiB) == 2
    assert "prefetching 2 batch(es) per DataLoader worker instead of 4" in caplog.text
    assert fitting_prefetch(8, GiB // 4, None) == PREFETCH  # no /dev/shm: nothing to fit
    assert fitting_prefetch(8, GiB // 4, 32 * GiB, ranks=2) == 4
    assert fitting_prefetch(8, GiB // 4, 32 * GiB, ranks=4) == 2  # four ranks on the node share /dev/shm


def test_too_little_shared_memory_for_one_batch_per_worker_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match=r"shared memory too small: 8 DataLoader workers x 1 batch\(es\) of 0\.25 GiB"):
        fitting_prefetch(8, GiB // 4, 2 * GiB)
