"""The audio stage: per clip with a usable face clip, ``<clip_id>.wav`` (16 kHz mono, sample 0 = the first
face frame) and ``<clip_id>.json`` (audio status, level, fingerprint)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from avf.config.data import AudioConfig, DataConfig, DatasetSpec
from avf.data.audio import AUDIO_MARGIN_S, ClipAudio, extract_clip_audio, write_wav
from avf.data.parallel import run_tasks
from avf.data.report import StageReport
from avf.data.stages.common import digest, file_stamp, prune_stale, read_sidecar, remove_temps, worker_results
from avf.data.stages.scan import report_scan, scan_dataset
from avf.data.video import MediaError
from avf.utils.io import atomic_path, write_json
from avf.utils.progress import track

__all__ = ["AudioJob", "audio_job", "run_audio"]

AUDIO_VERSION = 1


@dataclass(frozen=True)
class AudioJob:
    """One clip for the audio stage: ``duration_s`` seconds from ``t0`` (its first face frame), video timeline."""

    clip_id: str
    video: str
    audio_source: str | None
    t0: float
    duration_s: float
    source_start: float  # time on the video's timeline of a separate audio file's first sample
    out_dir: str
    cfg: AudioConfig
    fingerprint: str
    no_audio: bool = False  # the adapter says the clip has no audio at all (``extra["no_audio"]``)


def audio_job(job: AudioJob) -> dict[str, Any]:
    """Extract, align and check one clip's audio; writes ``<clip_id>.wav`` + ``.json``; returns the sidecar."""
    out = Path(job.out_dir)
    sidecar: dict[str, Any] = {
        "version": AUDIO_VERSION,
        "fingerprint": job.fingerprint,
        "clip_id": job.clip_id,
        "source": job.audio_source or job.video,
        "t0": job.t0,
    }
    try:
        if job.no_audio:
            clip = ClipAudio(np.zeros(round(job.duration_s * job.cfg.sample_rate), np.float32), "missing", False,
                             -math.inf, 0, 0)  # fmt: skip
        else:
            clip = extract_clip_audio(
                job.video, job.audio_source, job.t0, job.duration_s, job.cfg, source_start=job.source_start
            )
    except MediaError as e:
        sidecar.update(status=e.reason, audio_status=None, has_audio=False)
        write_json(out / f"{job.clip_id}.json", sidecar)
        return sidecar
    reason = clip.reason
    status = "ok"
    if reason is not None and job.cfg.missing_policy == "drop":
        status = reason if clip.status == "missing" else f"{reason} < {job.cfg.silence_dbfs}"
    sidecar.update(
        {
            "status": status,
            "audio_status": clip.status,
            "has_audio": clip.has_audio,
            "level_dbfs": round(clip.level_dbfs, 2) if math.isfinite(clip.level_dbfs) else None,
            "num_samples": len(clip.samples),
            "source_rate": clip.source_rate,
            "source_channels": clip.source_channels,
            "audio_file": f"{job.clip_id}.wav" if status == "ok" else None,
        }
    )
    if status == "ok":
        with atomic_path(out / f"{job.clip_id}.wav", suffix=".wav") as tmp:
            write_wav(tmp, clip.samples, job.cfg.sample_rate)
    write_json(out / f"{job.clip_id}.json", sidecar)
    return sidecar


def run_audio(
    spec: DatasetSpec,
    faces_dir: Path,
    out_dir: Path,
    cfg: DataConfig,
    report: StageReport,
    ray_address: str | None = None,
) -> None:
    """The audio stage over one dataset: every clip with a usable face clip (see :mod:`avf.data.stages`)."""
    scan = scan_dataset(spec)
    report_scan(scan, report)
    out_dir.mkdir(parents=True, exist_ok=True)
    remove_temps(out_dir)
    jobs: list[AudioJob] = []
    for clip in scan.clips:
        if clip.clip_id in scan.rejected:
            continue
        face = read_sidecar(faces_dir / f"{clip.clip_id}.json")
        if face is None or face.get("status") != "ok" or not face.get("times"):
            report.excluded += 1
            continue
        t0 = float(face["times"][0])
        fp = digest(
            {
                "v": AUDIO_VERSION,
                "cfg": cfg.audio.model_dump(mode="json"),
                "face": face.get("fingerprint"),
                "src": file_stamp(clip.audio_path or clip.video_path),
                "no_audio": bool(clip.extra.get("no_audio", False)),
                "start": clip.extra.get("start"),
            }
        )
        old = read_sidecar(out_dir / f"{clip.clip_id}.json")
        if old is not None and old.get("fingerprint") == fp:
            if old.get("status") == "ok" and (out_dir / f"{clip.clip_id}.wav").is_file():
                report.skipped += 1
                if old.get("audio_status") != "ok":
                    report.flags[f"audio {old.get('audio_status')}"] += 1
                continue
            if old.get("status") not in (None, "ok"):
                report.fail(clip.audio_path or clip.video_path, clip.clip_id, str(old["status"]))
                continue
        jobs.append(
            AudioJob(
                clip_id=clip.clip_id,
                video=str(clip.video_path),
                audio_source=str(clip.audio_path) if clip.audio_path is not None else None,
                t0=t0,
                duration_s=float(face.get("duration_s", 0.0)) + AUDIO_MARGIN_S,
                source_start=float(clip.extra.get("start") or face.get("source_start", 0.0)),
                out_dir=str(out_dir),
                cfg=cfg.audio,
                fingerprint=fp,
                # a frame folder without a separate audio file has no audio at all
                no_audio=bool(clip.extra.get("no_audio", False))
                or (bool(clip.extra.get("frames")) and clip.audio_path is None),
            )
        )
    results = run_tasks(audio_job, jobs, workers=cfg.workers, executor=cfg.executor, ray_address=ray_address)
    with worker_results(results, out_dir) as results:
        for job, res in track(results, total=len(jobs), desc=f"audio {spec.name}"):
            src = job.audio_source or job.video
            if isinstance(res, BaseException):
                report.fail(src, job.clip_id, f"internal error: {type(res).__name__}: {res}")
            elif res.get("status") != "ok":
                report.fail(src, job.clip_id, str(res.get("status")))
            else:
                report.processed += 1
                if res.get("audio_status") != "ok":
                    report.flags[f"audio {res.get('audio_status')}"] += 1
    report.extra["removed_stale"] = prune_stale(out_dir, scan.kept_ids(), (".json", ".wav"))
