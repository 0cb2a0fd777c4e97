"""Shared test configuration: offline, project-local service state, markers, and small helpers."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from avf.env import apply_defaults

ROOT = Path(__file__).resolve().parent.parent
apply_defaults(ROOT)
os.environ.setdefault("OMP_NUM_THREADS", "2")


def _has_cuda() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except Exception:
        return False


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if _has_cuda():
        return
    skip_gpu = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)


@pytest.fixture(scope="session")
def project_root() -> Path:
    return ROOT
