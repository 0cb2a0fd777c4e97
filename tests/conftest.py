"""Shared test configuration: offline, project-local service state, markers, and file order by duration."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from avf.env import apply_defaults
from avf.utils.terminal import LOG_DIR_ENV
from tests.support.durations import DURATIONS, DurationRecorder, load_durations, longest_first

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


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--record-durations",
        action="store_true",
        help=f"merge each test file's measured seconds into {DURATIONS.relative_to(ROOT)} (make test-durations)",
    )


def pytest_configure(config: pytest.Config) -> None:
    # under xdist the controller receives every worker's reports, so only it records (workers have workerinput)
    if config.getoption("--record-durations") and not hasattr(config, "workerinput"):
        config.pluginmanager.register(DurationRecorder(), "avf-duration-recorder")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    longest_first(items, load_durations())  # tests/support/durations.py says why
    if _has_cuda():
        return
    skip_gpu = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)


@pytest.fixture(scope="session")
def project_root() -> Path:
    return ROOT


@pytest.fixture(scope="session", autouse=True)
def stage_log_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The log files of the quiet stages tests run (avf.utils.terminal) go here, not to the checkout's runs/."""
    folder = tmp_path_factory.mktemp("stage-logs")
    os.environ[LOG_DIR_ENV] = str(folder)
    return folder
