"""``data.ingest: ray`` against the DataLoader path on 2 Ray Train workers (gloo), with the real stage tasks and
the tiny model: which clips each rank trains on, epoch by epoch, recorded by a wrapper around the real task.

* Stage 1 reads every clip exactly once per epoch both ways (16 clips in batches of 4, and 4 equal shards, so
  the stream does too), in a seeded order that changes with the epoch, the same number of micro-batches on
  every rank.
* Every micro-batch came the way the run asked for: decoded in Ray tasks or not, frames undecoded or not.
* Stage 3 trains on the very same micro-batches both ways, so the two runs' metrics are equal.
* A worker killed mid-run resumes the remote batches where its checkpoint left off: the same metrics as
  the uninterrupted run.
* Stage 1 with its frames decoded in the training step (``pretrain.decode: device``, here on the CPU) trains
  exactly as with the frames decoded in the Ray tasks.
* In-process training (``ray.num_workers: 0``) decodes in Ray tasks too, on the same clips per epoch.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from avf.config import Params, RayConfig
from avf.data.shards import ShardIndex
from avf.runtime import cluster
from avf.train import launch
from tests.support.recording_task import recorded
from tests.support.shards import write_shards

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

N = 16  # clips: 4 shards of 4
RANKS = 2


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    d = write_shards(tmp_path_factory.mktemp("ingest") / "clips", N, per_shard=4, n_frames=40, faces=True)
    cluster.ensure_cluster(RayConfig(num_workers=RANKS), decode_tasks=2)
    try:
        yield d
    finally:
        cluster.shutdown()


def _config(clips: Path, stage: str, ingest: str, record: Path, decode: str = "worker") -> dict[str, Any]:
    params = Params().model_dump(mode="json")
    params["model"]["size"] = "tiny"
    params["data"].update(ingest=ingest, ingest_tasks=2)
    params["data"]["augment"]["rand_augment"] = ""
    short = {"epochs": 2, "batch_size": 4, "log_every": 1, "warmup_epochs": 0, "num_workers": 0, "amp": "off"}
    params["pretrain"].update(short, decode=decode)
    params["finetune"].update(short, select="last")
    config: dict[str, Any] = {
        "stage": stage,
        "params": params,
        "task_factory": "tests.support.recording_task:build",
        "record_dir": str(record),
    }
    if stage == "pretrain":
        return {**config, "shard_dirs": [str(clips)], "num_samples": N}
    keys = ShardIndex.load(clips).keys
    dataset = {
        "name": "demo",
        "shard_dir": str(clips),
        "train_keys": keys[:12],
        "val_keys": keys[12:14],
        "test_keys": keys[14:],
        "task": "classification",
        "num_outputs": 3,
    }
    return {**config, "datasets": [dataset], "init_weights": None}


_RUNS: dict[str, tuple[list[dict], dict]] = {}


def _run(
    clips: Path, stage: str, ingest: str, name: str, failures: int = 0, decode: str = "worker"
) -> tuple[list[dict], dict]:
    """The run's per-epoch history and the micro-batches its ranks trained on, per epoch (each run once).
    Every micro-batch came the way the run asked for: decoded by Ray tasks or not, frames undecoded or not."""
    if name not in _RUNS:
        history, (batches, flags) = _train(clips, stage, ingest, name, failures, decode)
        assert flags == {(ingest == "ray", decode == "device")}, name
        _RUNS[name] = history, batches
    return _RUNS[name]


def _train(clips: Path, stage: str, ingest: str, name: str, failures: int, decode: str) -> tuple[list[dict], Any]:
    record = clips.parent / "records" / name
    cfg = RayConfig(num_workers=0 if name.endswith("in-process") else RANKS, max_failures=failures)
    tasks = 2 if ingest == "ray" else 0
    config = _config(clips, stage, ingest, record, decode)
    result = launch.run(config, cfg, name, clips.parent / "ray", tasks)
    history = json.loads((result.checkpoint / "state.json").read_text())["loop"]["history"]
    return history, recorded(record)


def _metrics(history: list[dict]) -> list[dict[str, float]]:
    return [{k: v for k, v in h.items() if isinstance(v, float)} for h in history]


def test_pretraining_reads_every_clip_once_per_epoch_both_ways(clips: Path) -> None:
    everything = Counter(ShardIndex.load(clips).keys)
    runs = {ingest: _run(clips, "pretrain", ingest, f"pretrain-{ingest}")[1] for ingest in ("loader", "ray")}
    for ingest, epochs in runs.items():
        assert sorted(epochs) == [0, 1], ingest
        for epoch, batches in epochs.items():
            assert Counter(k for b in batches for k in b) == everything, (ingest, epoch)
            assert len(batches) == 4 * RANKS and all(len(b) == 2 for b in batches), (ingest, epoch)
    ray_orders = [[k for b in runs["ray"][e] for k in b] for e in (0, 1)]
    assert ray_orders[0] != ray_orders[1]  # a new seeded order every epoch


def test_finetuning_trains_on_the_same_batches_both_ways(clips: Path) -> None:
    loader_history, loader_batches = _run(clips, "finetune", "loader", "finetune-loader")
    ray_history, ray_batches = _run(clips, "finetune", "ray", "finetune-ray")
    assert ray_batches == loader_batches
    assert len(ray_batches[0]) == 3 * RANKS  # 12 training clips, global batches of 4
    for a, b in zip(_metrics(loader_history), _metrics(ray_history), strict=True):
        assert a == pytest.approx(b, rel=1e-6)


def test_a_killed_worker_resumes_the_remote_batches(clips: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    plain, _ = _run(clips, "finetune", "ray", "finetune-ray")
    marker = clips.parent / "killed"
    monkeypatch.setenv("AVF_FAULT_KILL", f"rank=1,step=5,marker={marker}")  # the middle step of epoch 2
    crashed, batches = _run(clips, "finetune", "ray", "finetune-ray-killed", failures=1)
    assert marker.exists(), "the fault hook never fired"
    assert [h["step"] for h in crashed] == [h["step"] for h in plain] == [3, 6]
    for a, b in zip(_metrics(plain), _metrics(crashed), strict=True):
        assert a == pytest.approx(b, rel=1e-6)
    trained = Counter(k for b in batches[1] for k in b)  # epoch 2 ran again whole from its start
    again = trained - Counter(ShardIndex.load(clips).keys[:12])  # what the ranks had fetched before the kill
    assert set(trained) == set(ShardIndex.load(clips).keys[:12]) and 4 <= sum(again.values()) <= 12


def test_pretraining_frames_decoded_in_the_step_train_exactly_as_decoded_in_the_tasks(clips: Path) -> None:
    in_tasks, batches = _run(clips, "pretrain", "ray", "pretrain-ray")
    in_step, batches_in_step = _run(clips, "pretrain", "ray", "pretrain-ray-device", decode="device")
    assert batches_in_step == batches
    for a, b in zip(_metrics(in_tasks), _metrics(in_step), strict=True):
        assert a == pytest.approx(b, rel=1e-6)


def test_in_process_training_decodes_in_ray_tasks_too(clips: Path) -> None:
    _, on_workers = _run(clips, "finetune", "loader", "finetune-loader")
    _, in_process = _run(clips, "finetune", "ray", "finetune-ray-in-process")
    for epoch in (0, 1):
        assert Counter(k for b in in_process[epoch] for k in b) == Counter(k for b in on_workers[epoch] for k in b)
    assert all(len(b) == 4 for b in in_process[0])  # one rank: whole global batches
