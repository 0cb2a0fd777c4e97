"""Shared test configuration: offline, project-local service state, markers, and small helpers."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from avf.env import apply_defaults

ROOT = Path(__file__).resolve().parent.parent
apply_defaults(ROOT)
if os.environ.get("PYTEST_XDIST_WORKER"):
    # `make test` runs parallel workers: share the cores out instead of oversubscribing them (OpenMP threads
    # that outnumber the cores spin-wait for each other; the stages and Ray workers tests start inherit this)
    _share = (os.cpu_count() or 1) // int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    os.environ["OMP_NUM_THREADS"] = str(max(1, _share))
os.environ.setdefault("OMP_NUM_THREADS", "2")


def _has_cuda() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except Exception:
        return False


# The longest test files, longest first (measured on 2 cores; seconds under `make test`'s two xdist workers).
# `make test` hands whole files to its workers in collection order, so these start first and no long file
# is left to run alone at the end. Any other file keeps its place after them.
LONGEST_FIRST = (
    "integration/test_pipeline_e2e.py",  # ~150 s: `dvc repro` of every stage, then an experiment
    "reliability/test_interruption.py",  # ~140 s
    "reliability/test_worker_failure.py",  # ~120 s
    "integration/test_predict_e2e.py",  # ~50 s
    "unit/test_benchmarks.py",  # ~65 s
    "reliability/test_loader_load.py",  # ~45 s
    "integration/test_prefect_flows.py",
    "integration/test_mlflow_server.py",
    "reliability/test_servers_bind.py",
    "unit/test_infra.py",
    "unit/test_synth.py",
)


def _schedule_rank(item: pytest.Item) -> int:
    path = Path(str(item.path)).resolve()
    rel = path.relative_to(ROOT / "tests").as_posix() if path.is_relative_to(ROOT / "tests") else ""
    return LONGEST_FIRST.index(rel) if rel in LONGEST_FIRST else len(LONGEST_FIRST)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    items.sort(key=_schedule_rank)  # stable: the order inside a file and among the other files is kept
    if _has_cuda():
        return
    skip_gpu = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)


@pytest.fixture(scope="session")
def project_root() -> Path:
    return ROOT
