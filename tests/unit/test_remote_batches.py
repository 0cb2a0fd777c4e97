"""What a decode task returns (``avf.data.remote_batches.load_batch``, run here in-process): the DataLoader's
batch for stages 2 and 3, the stream's items for stage 1, and corrupt samples left out and reported; and the
pretraining frames decoded on the device (here the CPU): exactly the worker's clips."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import default_collate

from avf.config.data import AudioConfig, AugmentConfig, ClipConfig
from avf.data.loader import ClipDataset, collate_clips, pretrain_stream
from avf.data.remote_batches import BatchRequest, BatchSource, load_batch
from avf.data.shards import CorruptSampleError, ShardIndex
from avf.data.transforms import decode_on_device
from tests.support.shards import write_shards

CLIP, AUDIO, AUGMENT = ClipConfig(), AudioConfig(), AugmentConfig(rand_augment="")


def _same(remote: dict, local: dict) -> None:
    """A task's batch (tensors as numpy arrays) holds exactly the local batch's values."""
    assert remote.keys() == local.keys()
    for k, v in local.items():
        if isinstance(v, torch.Tensor):
            assert remote[k].dtype == v.numpy().dtype, k
            np.testing.assert_array_equal(remote[k], v.numpy(), err_msg=k)
        else:
            assert remote[k] == v, k


@pytest.fixture(scope="module")
def two_dirs(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    root = tmp_path_factory.mktemp("remote")
    return [
        write_shards(root / "a", 4, per_shard=2, n_frames=40, prefix="a__c"),
        write_shards(root / "b", 3, per_shard=2, n_frames=40, prefix="b__c"),
    ]


def test_a_finetuning_batch_is_the_dataloaders_batch(two_dirs: list[Path]) -> None:
    sets = [ClipDataset(d, train=True, clip=CLIP, audio=AUDIO, augment=AUGMENT, seed=3) for d in two_dirs]
    source = BatchSource.of(two_dirs, "finetune", 3, CLIP, AUDIO, AUGMENT)
    samples = ((1, "b__c02"), (0, "a__c01"), (0, "a__c03"))
    for epoch in (0, 5):
        for s in sets:
            s.set_epoch(epoch)
        expected = default_collate([sets[n][sets[n].keys.index(k)] for n, k in samples])
        batch = load_batch(source, BatchRequest(epoch, samples))
        assert batch.pop("skipped") == []
        _same(batch, expected)


def test_a_pretraining_batch_holds_the_streams_items(two_dirs: list[Path]) -> None:
    stream = pretrain_stream(
        two_dirs[:1], clip=CLIP, audio=AUDIO, augment=AUGMENT, seed=11, rank=0, world_size=1, samples_per_epoch=4
    )
    stream.set_epoch(2)
    items = {item["key"]: item for item in stream}
    source = BatchSource.of(two_dirs[:1], "pretrain", 11, CLIP, AUDIO, AUGMENT)
    keys = ShardIndex.load(two_dirs[0]).keys
    batch = load_batch(source, BatchRequest(2, tuple((0, k) for k in keys)))
    assert batch.pop("skipped") == []
    _same(batch, default_collate([items[k] for k in keys]))


def test_corrupt_samples_are_left_out_and_reported(tmp_path: Path) -> None:
    bad = write_shards(tmp_path / "bad", 4, per_shard=2, n_frames=40, bad={1: "00000.jpg", 2: "meta.json"})
    source = BatchSource.of([bad], "finetune", 0, CLIP, AUDIO, AUGMENT)
    batch = load_batch(source, BatchRequest(0, ((0, "demo__c00"), (0, "demo__c01"), (0, "demo__c03"))))
    assert batch["key"] == ["demo__c00", "demo__c03"] and batch["video"].shape[0] == 2
    assert len(batch["skipped"]) == 1 and "demo__c01" in batch["skipped"][0] and "frame" in batch["skipped"][0]
    with pytest.raises(CorruptSampleError, match=r"every sample of its micro-batch is corrupt.*demo__c02"):
        load_batch(source, BatchRequest(0, ((0, "demo__c01"), (0, "demo__c02"))))


def test_a_cluster_without_a_cpu_beside_the_trainers_is_reported(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import ray

    from avf.config import RayConfig
    from avf.runtime.cluster import check_decode_cpus

    cfg = RayConfig(num_workers=2, cpus_per_worker=1.0)
    monkeypatch.setattr(ray, "cluster_resources", lambda: {"CPU": 2.0})
    assert not check_decode_cpus(cfg)  # the decode tasks would wait for a CPU node to join
    assert "needs at least one CPU for decoding beside the 2 trainer(s)' 2, but the Ray cluster has 2" in caplog.text
    monkeypatch.setattr(ray, "cluster_resources", lambda: {"CPU": 3.0})
    assert check_decode_cpus(cfg)


@pytest.fixture(scope="module")
def faces(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_shards(tmp_path_factory.mktemp("faces") / "f", 6, per_shard=3, n_frames=70, faces=True)


def test_frames_decoded_on_the_device_are_the_workers_clips(faces: Path) -> None:
    kw = {"train": True, "clip": CLIP, "audio": AUDIO, "augment": AUGMENT, "seed": 5, "pretrain": True}
    worker, device = ClipDataset(faces, **kw), ClipDataset(faces, **kw, decode=False)
    for epoch in (0, 1):
        decoded = collate_clips([worker.item(k, epoch) for k in worker.keys])
        undecoded = collate_clips([device.item(k, epoch) for k in device.keys])
        assert {tuple(c) for c in undecoded["crop"].tolist()} != {(0, 0, 160, 160)}  # crops that resize
        frames, kept = decode_on_device(
            undecoded["jpeg"], undecoded["jpeg_sizes"], undecoded["crop"], CLIP.image_size, torch.device("cpu")
        )
        assert kept == list(range(len(worker.keys)))
        torch.testing.assert_close(frames, decoded["video"], rtol=0, atol=0)
        torch.testing.assert_close(undecoded["audio"], decoded["audio"], rtol=0, atol=0)


def test_a_clip_whose_frames_do_not_decode_is_left_out(faces: Path) -> None:
    ds = ClipDataset(faces, train=True, clip=CLIP, audio=AUDIO, augment=AUGMENT, pretrain=True, decode=False)
    batch = collate_clips([ds.item(k, 0) for k in ds.keys[:3]])
    sizes = batch["jpeg_sizes"]
    start = int(sizes[0].sum() + sizes[1, :4].sum())  # clip 1, frame 4: cut short after its headers
    batch["jpeg"][start + 700 : start + int(sizes[1, 4])] = 0
    cpu = torch.device("cpu")
    frames, kept = decode_on_device(batch["jpeg"], sizes, batch["crop"], CLIP.image_size, cpu)
    assert kept == [0, 2] and frames.shape == (2, CLIP.num_frames, 160, 160, 3)
    one = int(sizes[0].sum())
    with pytest.raises(ValueError, match="no clip of the batch decodes"):
        decode_on_device(batch["jpeg"][one : one + int(sizes[1].sum())], sizes[1:2], batch["crop"][1:2], 160, cpu)


def test_an_unreadable_first_frame_is_a_corrupt_sample_before_the_device(tmp_path: Path) -> None:
    bad = write_shards(tmp_path / "bad", 2, per_shard=2, n_frames=40, bad={0: "00000.jpg"})
    ds = ClipDataset(bad, train=True, clip=CLIP, audio=AUDIO, augment=AUGMENT, pretrain=True, decode=False)
    with pytest.raises(CorruptSampleError, match=r"demo__c00.*frame 0"):
        ds.item("demo__c00", 0)
