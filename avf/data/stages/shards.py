"""The shards stage: the usable clips of a manifest as WebDataset shards + ``index.json`` (``avf.data.shards``)."""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from avf.config.data import AudioConfig, DataConfig
from avf.data.audio import log_mel, read_wav
from avf.data.manifest import read_manifest
from avf.data.parallel import run_tasks
from avf.data.report import StageReport
from avf.data.shards import INDEX_NAME, ShardIndex, ShardWriter, npy_bytes, sample_key
from avf.data.stages.common import digest, file_stamp, read_sidecar
from avf.data.video import MediaError, read_jpeg_clip
from avf.utils.io import atomic_path
from avf.utils.progress import track

__all__ = ["ShardJob", "run_shards", "shard_job"]

SHARD_VERSION = 1


@dataclass(frozen=True)
class ShardJob:
    """One usable manifest row to pack as the sample ``key``."""

    key: str
    row: dict[str, Any]
    audio: AudioConfig
    fbank: bool  # store the full-clip log-mel fbank (float16) instead of the int16 waveform


def shard_job(job: ShardJob) -> dict[str, bytes]:
    """The tar members of one sample (see ``avf.data.shards``): meta, JPEG frames, fbank or pcm."""
    row = job.row
    face_path = Path(row["face_path"])
    face = read_sidecar(face_path.with_suffix(".json"))
    if face is None:
        raise MediaError(face_path.with_suffix(".json"), "face sidecar missing or unreadable")
    jpegs, _ = read_jpeg_clip(face_path)
    times = np.asarray(face["times"], dtype=np.float64)
    if len(jpegs) != len(times):
        raise MediaError(face_path, f"{len(jpegs)} frames but {len(times)} timestamps in its sidecar")
    samples = read_wav(row["audio_path"], job.audio.sample_rate)
    rel = times - times[0]
    meta = {
        "key": job.key,
        "clip_id": row["clip_id"],
        "dataset": row["dataset"],
        "subject": row["subject"],
        "label": int(row["label"]),
        "label_name": row["label_name"],
        "targets": row["targets"],
        "test_fold": int(row["test_fold"]),
        "official_split": row["official_split"],
        "fps": float(row["fps"]),
        "num_frames": len(jpegs),
        "frame_times": [round(float(t), 6) for t in rel],
        "face_coverage": float(row["face_coverage"]),
        "has_audio": bool(row["has_audio"]),
        "audio_status": row["audio_status"],
        "sample_rate": job.audio.sample_rate,
        "audio": "fbank" if job.fbank else "pcm",
    }
    members: dict[str, bytes] = {"meta.json": json.dumps(meta).encode()}
    if job.fbank:
        members["fbank.npy"] = npy_bytes(log_mel(samples, job.audio).astype(np.float16))
    else:
        members["pcm.npy"] = npy_bytes((np.clip(samples, -1, 1) * 32767).round().astype(np.int16))
    width = max(5, len(str(len(jpegs) - 1)))
    for i, data in enumerate(jpegs):
        members[f"{i:0{width}d}.jpg"] = data
    return members


def _shuffle_rank(key: str, seed: int) -> str:
    return hashlib.sha1(f"{seed}:{key}".encode()).hexdigest()


def _missing(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def run_shards(dataset: str, manifest_path: Path, out_dir: Path, cfg: DataConfig, report: StageReport) -> None:
    """Write the usable clips of a manifest as shards (whole directory replaced atomically)."""
    df = read_manifest(manifest_path)
    ok = df[df["status"] == "ok"]
    report.excluded = len(df) - len(ok)
    rows = [{k: (None if _missing(v) else v) for k, v in r.items()} for r in ok.to_dict("records")]
    inputs: list[str | Path] = [manifest_path]
    for r in rows:
        inputs += [r["face_path"], Path(r["face_path"]).with_suffix(".json"), r["audio_path"]]
    fingerprint = digest(
        {
            "v": SHARD_VERSION,
            "shards": cfg.shards.model_dump(mode="json"),
            "audio": cfg.audio.model_dump(mode="json"),
            "dataset": dataset,
            "inputs": [file_stamp(p) for p in inputs],
        }
    )
    try:
        old = ShardIndex.load(out_dir)
    except (FileNotFoundError, ValueError, KeyError, TypeError):
        old = None
    if old is not None and old.fingerprint == fingerprint:
        report.skipped = old.num_samples
        report.extra.update(shards=len(old.shards), samples=old.num_samples, up_to_date=True)
        return
    keyed = sorted(
        ((sample_key(dataset, r["clip_id"]), r) for r in rows), key=lambda kr: _shuffle_rank(kr[0], cfg.shards.seed)
    )
    jobs = [ShardJob(key, row, cfg.audio, cfg.shards.fbank_at_shard_time) for key, row in keyed]
    with atomic_path(out_dir) as tmp:
        writer = ShardWriter(tmp, int(cfg.shards.max_shard_mb * 2**20), cfg.shards.max_shard_count)
        results = run_tasks(shard_job, jobs, workers=cfg.workers, executor=cfg.executor, ordered=True)
        for job, res in track(results, total=len(jobs), desc=f"shards {dataset}"):
            if isinstance(res, BaseException):
                reason = res.reason if hasattr(res, "reason") else f"{type(res).__name__}: {res}"
                report.fail(job.row["face_path"], job.row["clip_id"], f"cannot pack sample: {reason}")
                continue
            writer.write(job.key, res)
            report.processed += 1
        shards = writer.close()
        index = ShardIndex(
            dataset=dataset,
            shards=shards,
            audio="fbank" if cfg.shards.fbank_at_shard_time else "pcm",
            fingerprint=fingerprint,
            extra={"sample_rate": cfg.audio.sample_rate, "num_mel_bins": cfg.audio.num_mel_bins},
        )
        (tmp / INDEX_NAME).write_text(json.dumps(index.to_json(), separators=(",", ":")) + "\n")
    report.extra.update(shards=len(shards), samples=index.num_samples, bytes=sum(s.bytes for s in shards))
