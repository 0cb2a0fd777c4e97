"""Shard writing and reading: bounds, keys, index, random access, streaming, safety, determinism."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest

from avf.data.shards import (
    INDEX_NAME,
    CorruptSampleError,
    ShardIndex,
    ShardWriter,
    iter_shard,
    parse_sample,
    read_sample,
    sample_key,
)


def _members(i: int, frame_bytes: int = 3000) -> dict[str, bytes]:
    return {
        "meta.json": json.dumps({"i": i}).encode(),
        "fbank.npy": bytes([i % 256]) * 100,
        "00000.jpg": bytes([i % 256]) * frame_bytes,
        "00001.jpg": bytes([(i + 1) % 256]) * frame_bytes,
    }


def _write(out: Path, n: int, max_bytes: int = 1 << 30, max_count: int = 1000) -> ShardIndex:
    writer = ShardWriter(out, max_bytes, max_count)
    for i in range(n):
        writer.write(f"demo__clip{i:03d}", _members(i))
    index = ShardIndex("demo", writer.close(), "fbank", "fp")
    (out / INDEX_NAME).write_text(json.dumps(index.to_json()))
    return index


def test_sample_keys_have_no_dots_or_slashes() -> None:
    assert sample_key("mafw", "00001") == "mafw__00001"
    assert sample_key("vox.2", "id1/a b.c") == "vox_2__id1_a_b_c"


def test_shards_are_bounded_by_count_and_size(tmp_path: Path) -> None:
    by_count = _write(tmp_path / "count", 10, max_count=4)
    assert [s.num_samples for s in by_count.shards] == [4, 4, 2]
    by_size = _write(tmp_path / "size", 10, max_bytes=20_000)
    assert all(s.bytes <= 20_000 for s in by_size.shards) and len(by_size.shards) >= 3
    for s in by_size.shards:
        assert (tmp_path / "size" / s.name).stat().st_size == s.bytes
    assert by_size.keys == [f"demo__clip{i:03d}" for i in range(10)]


def test_index_roundtrip_and_random_access(tmp_path: Path) -> None:
    _write(tmp_path, 9, max_count=4)
    index = ShardIndex.load(tmp_path)
    assert index.num_samples == 9 and index.dataset == "demo" and index.fingerprint == "fp"
    for key, (shard, offset, size) in reversed(index.locate().items()):
        members = read_sample(tmp_path / index.shards[shard].name, offset, size, key)
        i = int(key[-3:])
        assert members == _members(i)


def test_streaming_yields_every_sample_in_order(tmp_path: Path) -> None:
    index = _write(tmp_path, 5)
    got = list(iter_shard(tmp_path / index.shards[0].name))
    assert [k for k, _ in got] == index.keys
    assert all(m == _members(int(k[-3:])) for k, m in got)


def test_tar_is_standard_and_deterministic(tmp_path: Path) -> None:
    a = _write(tmp_path / "a", 3)
    b = _write(tmp_path / "b", 3)
    data_a = (tmp_path / "a" / a.shards[0].name).read_bytes()
    assert data_a == (tmp_path / "b" / b.shards[0].name).read_bytes()
    with tarfile.open(tmp_path / "a" / a.shards[0].name) as tar:
        members = tar.getmembers()
    assert [m.name for m in members[:4]] == ["demo__clip000.00000.jpg", "demo__clip000.00001.jpg",
                                             "demo__clip000.fbank.npy", "demo__clip000.meta.json"]  # fmt: skip
    # one 512-byte header per member (no PAX records), owner-less, read-only, mtime 0
    assert all(not m.pax_headers and m.mtime == 0 and m.mode == 0o444 and m.uname == m.gname == "" for m in members)
    assert members[1].offset == 512 + 3072  # the first frame's header and data (3000 bytes in 6 blocks)


def test_writer_refuses_unsafe_keys_members_and_duplicates(tmp_path: Path) -> None:
    writer = ShardWriter(tmp_path, 1 << 20, 10)
    with pytest.raises(ValueError, match="unsafe sample key"):
        writer.write("demo__a.b", _members(0))
    with pytest.raises(ValueError, match="unsafe member name"):
        writer.write("demo__a", {"../x.jpg": b"1", "meta.json": b"{}"})
    writer.write("demo__a", _members(0))
    with pytest.raises(ValueError, match="duplicate sample key"):
        writer.write("demo__a", _members(1))
    writer.close()


def _tar_bytes(entries: list[tuple[str, bytes]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in entries:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


@pytest.mark.parametrize("evil", ["../../evil.meta.json", "/tmp/evil.meta.json", "sub/evil.meta.json"])
def test_path_traversal_members_are_rejected_and_never_written(tmp_path: Path, evil: str) -> None:
    blob = _tar_bytes([(evil, b"{}"), ("evil.00000.jpg", b"x")])
    (tmp_path / "bad.tar").write_bytes(blob)
    before = sorted(p.name for p in tmp_path.parent.iterdir())
    with pytest.raises(CorruptSampleError, match=r"bad.tar: sample 'evil': unsafe member name"):
        parse_sample(blob, "evil", tmp_path / "bad.tar")
    streamed = list(iter_shard(tmp_path / "bad.tar"))
    assert isinstance(streamed[0][1], CorruptSampleError) and "unsafe member name" in str(streamed[0][1])
    assert sorted(p.name for p in tmp_path.parent.iterdir()) == before  # nothing extracted anywhere
    assert not Path("/tmp/evil.meta.json").exists()


def test_symlink_members_are_rejected(tmp_path: Path) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        link = tarfile.TarInfo("k.meta.json")
        link.type = tarfile.SYMTYPE
        link.linkname = "/etc/passwd"
        tar.addfile(link)
    with pytest.raises(CorruptSampleError, match="is not a regular file"):
        parse_sample(buf.getvalue(), "k")


def test_corrupt_or_truncated_samples_name_the_shard_and_key(tmp_path: Path) -> None:
    index = _write(tmp_path, 3)
    shard = tmp_path / index.shards[0].name
    _, offset, size = index.locate()["demo__clip001"]
    with pytest.raises(CorruptSampleError, match=r"shard-000000.tar: sample 'demo__clip001': unreadable tar data"):
        read_sample(shard, offset + 512, size - 512, "demo__clip001")  # starts mid-header
    with pytest.raises(CorruptSampleError, match="belongs to another sample"):
        read_sample(shard, offset, size, "demo__clip002")
    data = shard.read_bytes()
    shard.write_bytes(data[: offset + 900])  # cut inside clip001's members
    with pytest.raises(CorruptSampleError, match=r"sample 'demo__clip001': truncated shard"):
        read_sample(shard, offset, size, "demo__clip001")
    streamed = list(iter_shard(shard))
    assert streamed[0][0] == "demo__clip000" and isinstance(streamed[0][1], dict)
    assert isinstance(streamed[-1][1], CorruptSampleError) and "demo__clip001" in str(streamed[-1][1])
    with pytest.raises(CorruptSampleError, match=r"no meta\.json member"):
        parse_sample(_tar_bytes([("k.00000.jpg", b"x")]), "k")


def test_index_errors_are_clear(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="run `avf data shards` first"):
        ShardIndex.load(tmp_path)
    (tmp_path / INDEX_NAME).write_text('{"format": "something-else"}')
    with pytest.raises(ValueError, match="not an avf-webdataset v1 index"):
        ShardIndex.load(tmp_path)
