"""WebDataset tar shards of face clips + audio features, with an index for random access.

Sample layout (one sample = consecutive tar members sharing the key ``{dataset}__{clip_id}``, with no
dots so that WebDataset / Ray split ``key.member`` at the first dot):

- ``KEY.meta.json``: labels (``label``, ``label_name``, ``targets``), folds, ``subject``, ``fps``,
  ``frame_times`` (seconds, 0 = first frame = audio sample 0), ``face_coverage``, ``audio_status``...
- ``KEY.00000.jpg``, ``KEY.00001.jpg``, ...: the face frames, JPEG, copied byte for byte from the
  faces stage (never re-encoded);
- ``KEY.fbank.npy``: float16 ``[frames, 128]`` Kaldi log-mel of the whole clip (10 ms hop), or
  ``KEY.pcm.npy``: int16 16 kHz waveform when ``data.shards.fbank_at_shard_time`` is false.

Frames as JPEG members rather than one mp4 per sample, by measurement (``benchmarks/preprocess.py``:
160x160 face clips of 90 frames, one core): the loader needs the 16 frames of a window, which costs
2.3-2.5 ms as 16 JPEG decodes but 22-25 ms from an H.264 mp4 (the decoder must run from the start:
frames depend on each other); the mp4 is 11-15x smaller (45-71 KB vs 690-770 KB at JPEG quality 90).
Loader speed wins: storage is cheap next to GPU time, and the JPEGs are the faces stage's own bytes.

``index.json`` lists each shard's name, sample count, bytes, keys and each sample's byte range, so
the indexed reader (:func:`read_sample`) seeks straight to a sample. Samples are written in a seeded
shuffled order (subjects mixed within shards). Shards close before passing ``max_shard_mb`` or
``max_shard_count``. Tar headers are deterministic (mtime 0, uid 0): equal inputs give equal bytes.
Writing goes through ``webdataset.TarWriter``; reading stays ours, for safety and speed. Measured with
``python -m benchmarks.shard_readers`` (96 samples of 92 members, AMD EPYC, one process): streaming a
shard takes 2.66-2.75 ms per sample here and 2.77-2.99 ms through ``webdataset.WebDataset`` (1.04-1.09x),
but webdataset 1.0.2's tar iterator drops link and device members without a word and, being
``tarfile``, ends a shard silently at a bad header (the rest of the shard is lost), where
:func:`iter_shard` reports both. Reading one sample by its byte range takes 0.58-0.60 ms with
:func:`read_sample`, 2.07-2.18 ms with ``tarfile`` (3.4-3.8x) and 0.85 ms with ``wids.ShardListDataset``
0.1.11 (1.4x; not a dependency: it also copies shards into a cache folder and prints on creation).

Reading never touches the file system beyond the shard itself: members are parsed in memory with
``tarfile`` and ``extractfile`` (nothing is ever extracted). A member whose name is not
``KEY.<name>`` with a plain ``<name>`` (no ``/``, no ``..``), or is not a regular file, or a sample
that is truncated or unparsable raises :class:`CorruptSampleError` naming the shard and key. The
indexed reader raises it; the streaming reader skips and counts such samples (see ``avf.data.loader``).
"""

from __future__ import annotations

import io
import json
import re
import tarfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import webdataset as wds

__all__ = [
    "INDEX_NAME",
    "CorruptSampleError",
    "ShardIndex",
    "ShardInfo",
    "ShardWriter",
    "iter_shard",
    "parse_sample",
    "read_sample",
    "sample_key",
]

INDEX_NAME = "index.json"
FORMAT = "avf-webdataset"
VERSION = 1
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")
_MEMBER = re.compile(r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)+$")


def sample_key(dataset: str, clip_id: str) -> str:
    """``{dataset}__{clip_id}`` with anything but letters, digits, ``-`` and ``_`` (dots!) replaced by ``_``."""
    return f"{_UNSAFE.sub('_', dataset)}__{_UNSAFE.sub('_', clip_id)}"


class CorruptSampleError(Exception):
    """A sample that cannot be read; the message names the shard and the key."""

    def __init__(self, shard: str | Path, key: str, reason: str) -> None:
        self.shard = str(shard)
        self.key = key
        self.reason = reason
        super().__init__(f"{shard}: sample {key!r}: {reason}")


@dataclass
class ShardInfo:
    name: str
    num_samples: int = 0
    bytes: int = 0
    keys: list[str] = field(default_factory=list)
    offsets: list[int] = field(default_factory=list)
    sizes: list[int] = field(default_factory=list)


@dataclass
class ShardIndex:
    """Contents of ``index.json``."""

    dataset: str
    shards: list[ShardInfo]
    audio: str  # "fbank" or "pcm"
    fingerprint: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def num_samples(self) -> int:
        return sum(s.num_samples for s in self.shards)

    @property
    def keys(self) -> list[str]:
        return [k for s in self.shards for k in s.keys]

    def locate(self) -> dict[str, tuple[int, int, int]]:
        """``key -> (shard number, byte offset, byte size)``."""
        return {
            k: (i, o, n) for i, s in enumerate(self.shards) for k, o, n in zip(s.keys, s.offsets, s.sizes, strict=True)
        }

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "version": VERSION,
            "dataset": self.dataset,
            "fingerprint": self.fingerprint,
            "audio": self.audio,
            "frame_ext": "jpg",
            "num_samples": self.num_samples,
            "total_bytes": sum(s.bytes for s in self.shards),
            **self.extra,
            "shards": [s.__dict__ for s in self.shards],
        }

    @classmethod
    def load(cls, shard_dir: str | Path) -> ShardIndex:
        path = Path(shard_dir) / INDEX_NAME
        if not path.is_file():
            raise FileNotFoundError(f"no shard index {path} (run `avf data shards` first)")
        try:
            raw = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: not valid JSON: {e}") from None
        if raw.get("format") != FORMAT or raw.get("version") != VERSION:
            raise ValueError(f"{path}: not an {FORMAT} v{VERSION} index")
        known = {"format", "version", "dataset", "fingerprint", "audio", "frame_ext", "num_samples",
                 "total_bytes", "shards"}  # fmt: skip
        return cls(
            dataset=raw["dataset"],
            shards=[ShardInfo(**s) for s in raw["shards"]],
            audio=raw["audio"],
            fingerprint=raw.get("fingerprint", ""),
            extra={k: v for k, v in raw.items() if k not in known},
        )


class ShardWriter:
    """Writes samples into ``shard-NNNNNN.tar`` files under ``out_dir``, bounded in bytes and count.

    Each shard is a ``webdataset.TarWriter`` (members in sorted order, mtime 0, no owner names, mode 0444);
    this class adds the byte bound that is never passed (webdataset's own ``ShardWriter`` starts a new
    shard only after one went over it) and the byte ranges of :class:`ShardIndex`.
    """

    def __init__(self, out_dir: str | Path, max_bytes: int, max_count: int) -> None:
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.max_bytes = max_bytes
        self.max_count = max_count
        self.shards: list[ShardInfo] = []
        self._tar: wds.TarWriter | None = None
        self._seen: set[str] = set()

    def _open(self) -> wds.TarWriter:
        info = ShardInfo(name=f"shard-{len(self.shards):06d}.tar")
        self.shards.append(info)
        self._tar = wds.TarWriter(str(self.out_dir / info.name), user="", group="", mode=0o444, mtime=0)
        return self._tar

    def write(self, key: str, members: Mapping[str, bytes]) -> None:
        """Append one sample; ``members`` maps member names (``meta.json``, ``00000.jpg``...) to bytes."""
        if key in self._seen:
            raise ValueError(f"duplicate sample key {key!r}")
        if sample_key("x", key) != f"x__{key}":
            raise ValueError(f"unsafe sample key {key!r} (letters, digits, '-', '_' only)")
        for name in members:
            if not _MEMBER.match(f"{key}.{name}"):
                raise ValueError(f"unsafe member name {name!r} for sample {key!r}")
        self._seen.add(key)
        current = self.shards[-1] if self.shards else None
        if (
            self._tar is None
            or current is None
            or current.num_samples >= self.max_count
            or (current.num_samples > 0 and _closed_size(current.bytes, key, members) > self.max_bytes)
        ):
            self._close_current()
            self._open()
        tar = self._tar
        assert tar is not None
        info = self.shards[-1]
        start = tar.tarstream.offset
        tar.write({"__key__": key, **members})
        info.keys.append(key)
        info.offsets.append(start)
        info.sizes.append(tar.tarstream.offset - start)
        info.num_samples += 1
        info.bytes = tar.tarstream.offset

    def _close_current(self) -> None:
        if self._tar is not None:
            self._tar.close()
            self.shards[-1].bytes = (self.out_dir / self.shards[-1].name).stat().st_size
            self._tar = None

    def close(self) -> list[ShardInfo]:
        self._close_current()
        return self.shards


def _closed_size(offset: int, key: str, members: Mapping[str, bytes]) -> int:
    """Size of the tar file if this sample were appended at ``offset`` and the file then closed."""
    for name, data in members.items():
        long_name = len(f"{key}.{name}") > 99  # PAX adds an extended header (2 blocks)
        offset += tarfile.BLOCKSIZE * (1 + 2 * long_name) + -(-len(data) // tarfile.BLOCKSIZE) * tarfile.BLOCKSIZE
    offset += 2 * tarfile.BLOCKSIZE  # end-of-archive blocks
    return -(-offset // tarfile.RECORDSIZE) * tarfile.RECORDSIZE


def _check_member(shard: str | Path, key: str, member: tarfile.TarInfo) -> str:
    if not member.isreg():
        raise CorruptSampleError(shard, key, f"member {member.name!r} is not a regular file")
    return _member_suffix(shard, key, member.name)


def _member_suffix(shard: str | Path, key: str, name: str) -> str:
    """``<name>`` of a member called ``KEY.<name>``; anything else (traversal, odd names) is corrupt."""
    if "/" in name or "\\" in name or ".." in name or not _MEMBER.match(name):
        raise CorruptSampleError(shard, key, f"unsafe member name {name!r} (path traversal or odd characters)")
    mkey, _, rest = name.partition(".")
    if mkey != key:
        raise CorruptSampleError(shard, key, f"member {name!r} belongs to another sample")
    return rest


def _octal(field: bytes) -> int:
    if field[:1] and field[0] & 0x80:  # GNU base-256 for huge sizes
        return int.from_bytes(field[1:], "big")
    text = field.split(b"\0", 1)[0].strip()
    return int(text, 8) if text else 0


def _tar_entries(blob: bytes) -> Iterator[tuple[str, bytes, bytes]]:
    """``(name, typeflag, data)`` of the tar entries in ``blob`` (ustar, PAX and GNU long names).

    A fast in-memory reader for one sample's byte range (``tarfile`` spends ~60 us per member); headers
    are checksum-verified and nothing touches the file system. Raises ``ValueError`` on bad data.
    """
    view = memoryview(blob)
    pos, end = 0, len(blob)
    long_name: str | None = None
    while pos + tarfile.BLOCKSIZE <= end:
        header = blob[pos : pos + tarfile.BLOCKSIZE]
        if header[0] == 0 and header.count(0) == tarfile.BLOCKSIZE:
            return  # end-of-archive marker
        field = header[148:156]
        stored = _octal(field)
        unsigned = sum(header) - sum(field) + 8 * 32  # the checksum field counts as spaces
        if stored != unsigned:
            high = np.frombuffer(header[:148] + header[156:], np.uint8) > 127
            if stored != unsigned - 256 * int(high.sum()):  # some writers sum signed chars
                raise ValueError(f"bad tar header checksum at byte {pos}")
        size = _octal(header[124:136])
        typeflag = header[156:157]
        start = pos + tarfile.BLOCKSIZE
        if start + size > end:
            raise ValueError(f"member at byte {pos} runs past the end of the data (truncated)")
        data = bytes(view[start : start + size])
        pos = start + -(-size // tarfile.BLOCKSIZE) * tarfile.BLOCKSIZE
        if typeflag == b"x":  # PAX extended header: "<len> key=value\n" records
            for record in data.decode("utf-8").splitlines():
                key, _, value = record.partition(" ")[2].partition("=")
                if key == "path":
                    long_name = value
            continue
        if typeflag == b"L":  # GNU long name
            long_name = data.rstrip(b"\0").decode("utf-8")
            continue
        if typeflag == b"g":
            continue
        name = header[:100].split(b"\0", 1)[0].decode("utf-8")
        prefix = header[345:500].split(b"\0", 1)[0].decode("utf-8") if header[257:262] == b"ustar" else ""
        if long_name is not None:
            name, long_name = long_name, None
        elif prefix:
            name = f"{prefix}/{name}"
        yield name, typeflag, data


def parse_sample(blob: bytes, key: str, shard: str | Path = "<memory>") -> dict[str, bytes]:
    """Members of one sample from its tar bytes, read in memory only (see the module docstring)."""
    out: dict[str, bytes] = {}
    try:
        for name, typeflag, data in _tar_entries(blob):
            if typeflag not in (b"0", b"\0"):
                raise CorruptSampleError(shard, key, f"member {name!r} is not a regular file")
            out[_member_suffix(shard, key, name)] = data
    except (ValueError, UnicodeDecodeError) as e:
        raise CorruptSampleError(shard, key, f"unreadable tar data: {e}") from None
    if "meta.json" not in out:
        raise CorruptSampleError(shard, key, "no meta.json member")
    return out


def read_sample(shard_path: str | Path, offset: int, size: int, key: str) -> dict[str, bytes]:
    """Random access: read the byte range of one sample and parse it in memory."""
    try:
        with open(shard_path, "rb") as f:
            f.seek(offset)
            blob = f.read(size)
    except OSError as e:
        raise CorruptSampleError(shard_path, key, f"cannot read shard: {e}") from None
    if len(blob) != size:
        raise CorruptSampleError(shard_path, key, f"truncated shard: {len(blob)} of {size} bytes")
    return parse_sample(blob, key, shard_path)


def iter_shard(shard_path: str | Path) -> Iterator[tuple[str, dict[str, bytes] | CorruptSampleError]]:
    """Stream a shard sequentially: ``(key, members)``, or ``(key, error)`` for a bad sample.

    A tar that breaks off mid-way yields one error for the sample being read and stops. ``tarfile``
    takes a bad or cut-off header after the first for the end of the archive; a shard that does not
    end with the end-of-archive zero block therefore also yields an error (for the unread rest).
    """
    key: str | None = None
    members: dict[str, bytes] = {}
    bad: CorruptSampleError | None = None
    end = 0
    try:
        with tarfile.open(shard_path, mode="r|") as tar:
            for member in tar:
                mkey = member.name.split("/")[-1].partition(".")[0]
                if mkey != key:
                    if key is not None:
                        yield key, bad or (members if "meta.json" in members else _no_meta(shard_path, key))
                    key, members, bad = mkey, {}, None
                try:
                    rest = _check_member(shard_path, mkey, member)
                    fh = tar.extractfile(member)
                    members[rest] = fh.read() if fh is not None else b""
                except CorruptSampleError as e:
                    bad = bad or e
            end = tar.offset  # where tarfile stopped reading headers
    except (tarfile.TarError, OSError) as e:
        yield key or "<unknown>", CorruptSampleError(shard_path, key or "<unknown>", f"unreadable tar data: {e}")
        return
    if key is not None:
        yield key, bad or (members if "meta.json" in members else _no_meta(shard_path, key))
    if not _ends_cleanly(shard_path, end):
        after = f" after sample {key!r}" if key is not None else ""
        reason = f"unreadable tar data: bad or truncated header at byte {end}{after}; the rest of the shard is skipped"
        yield "<unknown>", CorruptSampleError(shard_path, "<unknown>", reason)


def _ends_cleanly(shard_path: str | Path, offset: int) -> bool:
    """Whether a zero block (the end-of-archive marker) sits at ``offset``."""
    try:
        with open(shard_path, "rb") as f:
            f.seek(offset)
            block = f.read(tarfile.BLOCKSIZE)
    except OSError:
        return False
    return len(block) == tarfile.BLOCKSIZE and not any(block)


def _no_meta(shard: str | Path, key: str) -> CorruptSampleError:
    return CorruptSampleError(shard, key, "no meta.json member")


def npy_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    return buf.getvalue()


def load_npy(data: bytes) -> np.ndarray:
    return np.load(io.BytesIO(data), allow_pickle=False)
