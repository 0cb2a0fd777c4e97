"""Property-based tests (hypothesis): ``params.yaml`` validation and shard readers given corrupt tar data.

Params: an unknown key at any depth, a value of the wrong type, an impossible mask ratio is a
:class:`~avf.config.ParamsError` naming the dotted key; every ratio from the allowed sets is accepted.
Shards (written by :class:`~avf.data.shards.ShardWriter`, then damaged: byte flips, truncation,
path-traversal names, link members, huge declared sizes): the indexed reader raises only
:class:`~avf.data.shards.CorruptSampleError` naming the shard and the key, the streaming reader
skips and counts, and nothing is ever written to the file system.
"""

from __future__ import annotations

import json
import math
import os
import typing
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from avf.config import Params, ParamsError, load_params, parse_params
from avf.config.base import Section
from avf.config.data import AudioConfig, ClipConfig, DatasetSpec
from avf.data.audio import log_mel
from avf.data.loader import ClipDataset, pretrain_stream
from avf.data.shards import INDEX_NAME, CorruptSampleError, ShardIndex, ShardWriter, iter_shard, npy_bytes, read_sample
from avf.data.video import encode_jpeg
from avf.geometry import RUNNING_CELL_RATIOS

pytestmark = pytest.mark.reliability

ROOT = Path(__file__).resolve().parents[2]
SETTINGS = settings(max_examples=40, deadline=None, database=None)

# ------------------------------------------------------------------------------------------- params


def _sections(model: type[Section], prefix: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], type[Section]]]:
    """Every strict section of ``model`` with its dotted path (nested sections included)."""
    out = [(prefix, model)]
    for name, info in model.model_fields.items():
        ann = info.annotation
        if isinstance(ann, type) and issubclass(ann, Section):
            out += _sections(ann, (*prefix, name))
    return out


# The real params.yaml (read once: the working tree may change under a long run), its sections, and
# the entries of its data.datasets mapping (DatasetSpec).
REAL_TEXT = (ROOT / "params.yaml").read_text()
REAL = yaml.safe_load(REAL_TEXT)
SECTIONS = _sections(Params) + [(("data", "datasets", name), DatasetSpec) for name in REAL["data"]["datasets"]]
LEAVES = [
    ((*path, name), info)
    for path, model in SECTIONS
    for name, info in model.model_fields.items()
    if not (isinstance(info.annotation, type) and issubclass(info.annotation, Section))
    and typing.get_origin(info.annotation) is not dict
    and name != "name"  # DatasetSpec.name is filled in from its key
]
WRONG = st.one_of(
    st.dictionaries(st.text(min_size=1, max_size=4), st.integers(), min_size=1, max_size=2),
    st.lists(st.dictionaries(st.just("x"), st.integers(), min_size=1), min_size=1, max_size=2),
)


def _with(raw: dict[str, Any], path: tuple[str, ...], value: Any) -> dict[str, Any]:
    """A deep copy of ``raw`` with ``value`` at ``path``."""
    out = json.loads(json.dumps(raw))
    node = out
    for part in path[:-1]:
        node = node.setdefault(part, {})
    node[path[-1]] = value
    return out


@pytest.fixture(scope="module")
def params_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("params") / "params.yaml"
    path.write_text(REAL_TEXT)
    return path


@SETTINGS
@given(
    where=st.sampled_from(SECTIONS),
    key=st.from_regex(r"[a-z][a-z0-9_]{0,14}", fullmatch=True),
    value=st.one_of(st.integers(), st.booleans(), st.text(max_size=6), st.none(), st.floats(allow_nan=False)),
)
def test_unknown_keys_at_any_depth_are_errors_naming_the_key(
    params_file: Path, where: tuple[tuple[str, ...], type[Section]], key: str, value: Any
) -> None:
    path, model = where
    if key in model.model_fields:
        return
    dotted = ".".join((*path, key))
    with pytest.raises(ParamsError) as err:
        load_params(params_file, overrides={dotted: value})
    assert "params.yaml: invalid parameters" in str(err.value)
    assert f"  - {dotted}: unknown key (typo?)" in str(err.value), str(err.value)


@SETTINGS
@given(leaf=st.sampled_from(LEAVES), value=WRONG)
def test_values_of_the_wrong_type_are_errors_naming_the_key(leaf: tuple[tuple[str, ...], Any], value: Any) -> None:
    path, _ = leaf
    with pytest.raises(ParamsError) as err:
        parse_params(_with(REAL, path, value), "params.yaml")
    assert f"  - {'.'.join(path)}" in str(err.value), str(err.value)


def test_the_real_params_file_and_the_leaf_list_are_sound(params_file: Path) -> None:
    """Guards the generators above: the base file is valid and the leaves cover every section."""
    assert parse_params(REAL) == load_params(params_file)
    assert len(LEAVES) > 100 and {p[:1] for p, _ in LEAVES} >= {("data",), ("masking",), ("pretrain",), ("ray",)}


VIDEO_OK = [k / 100 for k in range(2, 100, 2)]  # 100 patches a frame; the visible ones split over 2 regions
AUDIO_OK = [(128 - 8 * m) / 128 for m in range(1, 16)]  # 128 patches; visible ones split over 8 regions
DEC_AUDIO_OK = [k / 128 for k in range(128)]


def _far_from(allowed: list[float]) -> st.SearchStrategy[float]:
    return st.floats(min_value=1e-3, max_value=1 - 1e-3).filter(lambda r: min(abs(r - a) for a in allowed) > 1e-4)


def _masking(**values: Any) -> Params:
    return parse_params({"masking": values}, "params.yaml")


@SETTINGS
@given(
    video=st.sampled_from(VIDEO_OK),
    audio=st.sampled_from(AUDIO_OK),
    dec_video=st.sampled_from(RUNNING_CELL_RATIOS),
    dec_audio=st.sampled_from(DEC_AUDIO_OK),
)
def test_every_ratio_from_the_allowed_sets_is_accepted(
    video: float, audio: float, dec_video: float, dec_audio: float
) -> None:
    m = _masking(video_ratio=video, audio_ratio=audio, decoder_video_ratio=dec_video, decoder_audio_ratio=dec_audio)
    assert (m.masking.video_ratio, m.masking.audio_ratio) == (video, audio)


@SETTINGS
@given(
    which=st.sampled_from(["video_ratio", "audio_ratio", "decoder_video_ratio"]),
    data=st.data(),
)
def test_impossible_mask_ratios_are_errors_naming_the_key(which: str, data: st.DataObject) -> None:
    allowed = {"video_ratio": VIDEO_OK, "audio_ratio": AUDIO_OK, "decoder_video_ratio": list(RUNNING_CELL_RATIOS)}
    out_of_range = [1.0, -0.5, 1.5, math.inf, -math.inf, math.nan] + ([] if which.startswith("decoder") else [0.0])
    bad = data.draw(st.one_of(_far_from(allowed[which]), st.sampled_from(out_of_range)))
    with pytest.raises(ParamsError, match=rf"masking\.{which}"):
        _masking(**{which: bad})
    if which == "decoder_video_ratio" and 0 <= bad < 1:  # only the running-cell mask needs the 2x2 cells
        assert _masking(decoder_masking=False, decoder_video_ratio=bad).masking.decoder_video_ratio == bad


# ------------------------------------------------------------------------------------------- shards

AUDIO = AudioConfig()
CLIP = ClipConfig(num_frames=2, sampling_rate=1, image_size=32, test_views=1)
KEYS = [f"demo__c{i}" for i in range(3)]
CANARY = f"avf-canary-{os.getpid()}"
EVIL_NAMES = st.one_of(
    st.sampled_from(["..", "/", "./", "a/b", "\\x"]).map(lambda p: p + CANARY),
    st.integers(1, 6).map(lambda n: "../" * n + CANARY + ".meta.json"),
    st.just(f"/tmp/{CANARY}.meta.json"),
    st.sampled_from(KEYS).map(lambda k: f"{k}/../../{CANARY}.meta.json"),
    st.sampled_from(KEYS).map(lambda k: f"{k}.meta.json/../../../{CANARY}"),
)


@cache
def _members(i: int) -> dict[str, bytes]:
    """A small real sample: 4 JPEG frames (32 px), a full-clip fbank and its meta."""
    t = np.arange(8000) / 16000
    wave = (0.3 * np.sin(2 * np.pi * (300 + 100 * i) * t)).astype(np.float32)
    meta = {"dataset": "demo", "label": i % 2, "targets": None, "frame_times": [0.0, 0.04, 0.08, 0.12]}
    members = {"meta.json": json.dumps(meta).encode(), "fbank.npy": npy_bytes(log_mel(wave, AUDIO).astype(np.float16))}
    for f in range(4):
        members[f"{f:05d}.jpg"] = encode_jpeg(np.full((32, 32, 3), 40 * f + 10 * i, np.uint8), 90)
    return members


def _write_shards(out: Path, keys: list[str], per_shard: int) -> ShardIndex:
    writer = ShardWriter(out, 1 << 30, per_shard)
    for i, key in enumerate(keys):
        writer.write(key, _members(i))
    index = ShardIndex("demo", writer.close(), "fbank", "fp", {"num_mel_bins": AUDIO.num_mel_bins})
    (out / INDEX_NAME).write_text(json.dumps(index.to_json()))
    return index


class Pristine:
    """The shard under test (bytes and index) and the folder it lives in (short repr for hypothesis)."""

    def __init__(self, root: Path, blob: bytes, index: ShardIndex) -> None:
        self.root, self.blob, self.index = root, blob, index

    def __repr__(self) -> str:
        return f"Pristine({self.root})"


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Pristine:
    """One shard of the three samples, and a second, good shard (the stream's other reader)."""
    root = tmp_path_factory.mktemp("shards")
    index = _write_shards(root / "good", KEYS, per_shard=3)
    _write_shards(root / "other", [f"demo__o{i}" for i in range(3)], per_shard=3)
    return Pristine(root, (root / "good" / index.shards[0].name).read_bytes(), index)


def _snapshot(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def _no_writes(root: Path, before: set[str], work: Path) -> None:
    assert _snapshot(root) - before <= {str(p.relative_to(root)) for p in [work, *work.rglob("*")]}
    for where in (Path("/tmp"), work, work.parent, root.parent, Path.cwd()):
        assert not list(where.glob(f"{CANARY}*")), f"a file was written in {where}"


def _damaged(root: Path, blob: bytes, index: ShardIndex) -> Path:
    """A shard folder holding ``blob`` as its only shard, with the pristine index."""
    work = root / "damaged"
    work.mkdir(exist_ok=True)
    (work / index.shards[0].name).write_bytes(blob)
    (work / INDEX_NAME).write_text(json.dumps(index.to_json()))
    return work


def _check_indexed(work: Path, index: ShardIndex) -> dict[str, str]:
    """Read every key through ``read_sample`` and ``ClipDataset``: data or ``CorruptSampleError`` only."""
    shard = work / index.shards[0].name
    outcome = {}
    ds = ClipDataset(work, None, train=False, clip=CLIP, audio=AUDIO)
    for i, (key, (_, offset, size)) in enumerate(index.locate().items()):
        try:
            members = read_sample(shard, offset, size, key)
            assert isinstance(members, dict) and "meta.json" in members
            assert all(isinstance(v, bytes) and "/" not in k and ".." not in k for k, v in members.items())
        except CorruptSampleError as e:
            assert str(shard) in str(e) and repr(key) in str(e) and e.key == key
            outcome[key] = "corrupt"
        try:
            item = ds[i]
            assert item["key"] == key and item["video"].shape[-2] == CLIP.image_size
        except CorruptSampleError as e:
            assert str(shard) in str(e) and repr(key) in str(e)
            outcome.setdefault(key, "corrupt item")
    return outcome


def _check_stream(root: Path, work: Path, expect_skip: bool) -> None:
    """The streaming reader never raises on a damaged shard: it skips, counts and meets its quota."""
    read = list(iter_shard(work / "shard-000000.tar"))
    for key, members in read:
        assert isinstance(members, dict | CorruptSampleError)
        if isinstance(members, CorruptSampleError):
            assert str(work / "shard-000000.tar") in str(members) and members.key == key
    delivered = {key for key, members in read if isinstance(members, dict)}
    if set(KEYS) - delivered:  # nothing is lost silently: a missing sample comes with an error
        assert any(isinstance(m, CorruptSampleError) for _, m in read), read
    stream = pretrain_stream(
        [work, root / "other"], clip=CLIP, audio=AUDIO, seed=0, rank=0, world_size=1, samples_per_epoch=6
    )
    items = list(stream)
    assert len(items) == 6
    if expect_skip:
        assert stream.skipped >= 1


@SETTINGS
@given(
    key=st.sampled_from(KEYS),
    flips=st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(1, 255)), min_size=1, max_size=6),
)
def test_byte_flips_give_data_or_a_corrupt_sample_error(
    pristine: Pristine, key: str, flips: list[tuple[float, int]]
) -> None:
    root, blob, index = pristine.root, pristine.blob, pristine.index
    _, offset, size = index.locate()[key]
    damaged = bytearray(blob)
    for where, mask in flips:
        damaged[offset + int(where * size)] ^= mask
    before = _snapshot(root)
    work = _damaged(root, bytes(damaged), index)
    _check_indexed(work, index)
    _check_stream(root, work, expect_skip=False)
    _no_writes(root, before, work)


@SETTINGS
@given(cut=st.floats(0, 1, exclude_max=True))
def test_truncated_shards_give_data_or_a_corrupt_sample_error(pristine: Pristine, cut: float) -> None:
    root, blob, index = pristine.root, pristine.blob, pristine.index
    keep = int(cut * len(blob))
    before = _snapshot(root)
    work = _damaged(root, blob[:keep], index)
    outcome = _check_indexed(work, index)
    for key, (_, offset, size) in index.locate().items():  # whole samples before the cut still read
        assert (key in outcome) == (offset + size > keep), (key, outcome)
    cut_inside = any(offset < keep < offset + size for _, offset, size in index.locate().values())
    _check_stream(root, work, expect_skip=cut_inside)
    _no_writes(root, before, work)


def _headers(blob: bytes, offset: int, size: int) -> list[int]:
    """Byte positions of the tar headers of the sample at ``offset``."""
    pos, out = offset, []
    while pos < offset + size:
        out.append(pos)
        declared = int(blob[pos + 124 : pos + 136].split(b"\0")[0] or b"0", 8)
        pos += 512 + -(-declared // 512) * 512
    return out


def _patch(blob: bytearray, pos: int, **fields: bytes) -> None:
    """Rewrite header fields at ``pos`` and fix the checksum, so the tar stays well-formed."""
    spans = {"name": (0, 100), "size": (124, 136), "typeflag": (156, 157), "linkname": (157, 257)}
    header = bytearray(blob[pos : pos + 512])
    for name, value in fields.items():
        lo, hi = spans[name]
        header[lo:hi] = value[: hi - lo].ljust(hi - lo, b"\0")
    header[148:156] = b" " * 8
    header[148:156] = b"%06o\0 " % sum(header)
    blob[pos : pos + 512] = header


@SETTINGS
@given(
    key=st.sampled_from(KEYS),
    member=st.integers(0, 5),
    attack=st.one_of(
        EVIL_NAMES.map(lambda n: {"name": n.encode()}),
        st.sampled_from([b"1", b"2", b"3", b"4", b"5", b"6"]).map(
            lambda t: {"typeflag": t, "linkname": f"/tmp/{CANARY}".encode()}  # hard/sym links, devices, dirs, fifos
        ),
        st.integers(1 << 20, 8**11 - 1).map(lambda n: {"size": b"%011o" % n}),
    ),
)
def test_traversal_names_links_and_huge_sizes_are_refused_and_write_nothing(
    pristine: Pristine, key: str, member: int, attack: dict[str, bytes]
) -> None:
    root, blob, index = pristine.root, pristine.blob, pristine.index
    _, offset, size = index.locate()[key]
    damaged = bytearray(blob)
    _patch(damaged, _headers(blob, offset, size)[member], **attack)
    before = _snapshot(root)
    work = _damaged(root, bytes(damaged), index)
    outcome = _check_indexed(work, index)
    assert outcome.get(key) == "corrupt", (attack, outcome)
    _check_stream(root, work, expect_skip=True)
    _no_writes(root, before, work)
