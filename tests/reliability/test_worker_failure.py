"""Ray Train: 2 workers follow the 1-worker trajectory, and a killed worker costs only a restart.

A worker process is SIGKILLed mid-epoch by the fault-injection hook (not a sleep race); Ray restores
the worker group from the last reported checkpoint and the run finishes with the same step count and
weights as an uninterrupted run.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from avf.artifacts.weights import load_weights
from avf.config import RayConfig
from avf.runtime import cluster
from avf.train import launch
from avf.train.worker import run_local
from tests.support.toy_task import toy_config

pytestmark = [pytest.mark.reliability, pytest.mark.timeout(600)]


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[None]:
    cluster.ensure_cluster(RayConfig(num_workers=2))
    yield
    cluster.shutdown()


def _history(checkpoint: Path) -> list[dict]:
    import json

    return json.loads((checkpoint / "state.json").read_text())["loop"]["history"]


def _selected(checkpoint: Path) -> dict:
    import json

    return json.loads((checkpoint / "state.json").read_text())["loop"]["selected"]


def test_two_workers_match_one_and_survive_a_killed_worker(
    ray_cluster: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the exported weights are the mean of the last 2 epochs, kept on both ranks and evaluated by both
    config = toy_config(epochs=3, batch_size=8, n=64, select_rule="mean_last", select_epochs=2)
    single, _ = run_local(config, tmp_path / "single")

    sigint = signal.getsignal(signal.SIGINT)
    two = launch.run(config, RayConfig(num_workers=2, max_failures=2), "two", tmp_path / "ray")
    assert signal.getsignal(signal.SIGINT) is sigint, "Ray Train's SIGINT handler outlived its run"
    hist_two = _history(two.checkpoint)
    assert [h["step"] for h in hist_two] == [8, 16, 24]
    for a, b in zip(single["history"], hist_two, strict=True):
        assert a["val/loss"] == pytest.approx(b["val/loss"], rel=1e-4)
    selected_two = _selected(two.checkpoint)
    assert selected_two["epochs"] == [1, 2]
    assert selected_two["metrics"]["val/loss"] == pytest.approx(single["selected"]["metrics"]["val/loss"], rel=1e-4)

    marker = tmp_path / "killed"  # in epoch 2: the restored running mean already holds epoch 1
    monkeypatch.setenv("AVF_FAULT_KILL", f"rank=1,step=20,marker={marker}")
    crashed = launch.run(config, RayConfig(num_workers=2, max_failures=2), "crash", tmp_path / "ray")
    assert marker.exists(), "the fault hook never fired"
    hist_crash = _history(crashed.checkpoint)
    assert [h["step"] for h in hist_crash] == [8, 16, 24]  # no step repeated or lost
    assert hist_crash[-1]["val/loss"] == pytest.approx(hist_two[-1]["val/loss"], rel=1e-4)
    assert _selected(crashed.checkpoint)["metrics"]["val/loss"] == pytest.approx(
        selected_two["metrics"]["val/loss"], rel=1e-4
    )
    for name in ("model.safetensors", "selected.safetensors"):
        w_two, w_crash = load_weights(two.checkpoint / name), load_weights(crashed.checkpoint / name)
        for k in w_two:
            torch.testing.assert_close(w_crash[k], w_two[k], rtol=1e-4, atol=1e-6)
