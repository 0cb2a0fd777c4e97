"""Small shards written straight from synthetic samples (no video, no face detection): flat grey frames whose
level encodes the frame number, and a tone schedule's fbank."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from avf.config.data import AudioConfig
from avf.data import audio as audio_mod
from avf.data.shards import INDEX_NAME, ShardIndex, ShardWriter, npy_bytes
from avf.data.video import encode_jpeg
from tests.support import media

AUDIO = AudioConfig()
TONES = (300.0, 600.0, 1200.0, 2400.0)


def frame(i: int, size: int) -> np.ndarray:
    """A flat grey frame whose level encodes its index (2 * i), recoverable after JPEG and resizing."""
    return np.full((size, size, 3), 2 * i, np.uint8)


def sample(
    i: int, n_frames: int, size: int = 160, faces: bool = False, quality: int = 95, **meta: Any
) -> dict[str, bytes]:
    """The members of sample ``i``: label ``i % 3``, ``n_frames`` frames at 25 fps (flat grey levels, or a
    drifting face photo with ``faces``) as JPEGs of ``quality``, fbank audio."""
    times = np.arange(n_frames) / 25.0
    wave = media.tone_schedule(TONES, n_frames / 25.0 + 0.5, 16000)[0]
    info = {"dataset": "demo", "label": i % 3, "targets": None, "frame_times": times.round(6).tolist(), **meta}
    members = {
        "meta.json": json.dumps(info).encode(),
        "fbank.npy": npy_bytes(audio_mod.log_mel(wave, AUDIO).astype(np.float16)),
    }
    pictures = media.face_frames(n_frames, (size, size), seed=i) if faces else [frame(f, size) for f in range(n_frames)]
    for f, picture in enumerate(pictures):
        members[f"{f:05d}.jpg"] = encode_jpeg(picture, quality)
    return members


def write_shards(
    out: Path,
    n: int,
    per_shard: int,
    n_frames: int = 80,
    bad: dict[int, str] | None = None,
    prefix: str = "demo__c",
    faces: bool = False,
    quality: int = 95,
    **meta: Any,
) -> Path:
    """``n`` samples (keys ``{prefix}00``...) in shards of ``per_shard`` with their index; ``bad`` maps sample
    numbers to a member to corrupt."""
    writer = ShardWriter(out, 1 << 30, per_shard)
    for i in range(n):
        members = sample(i, n_frames, faces=faces, quality=quality, **meta)
        if bad and i in bad:
            members[bad[i]] = b"not a jpeg or json"
        writer.write(f"{prefix}{i:02d}", members)
    index = ShardIndex("demo", writer.close(), "fbank", "fp", {"num_mel_bins": 128})
    (out / INDEX_NAME).write_text(json.dumps(index.to_json()))
    return out
