"""The faces stage: per clip, ``<clip_id>.mkv`` (JPEG face frames) and ``<clip_id>.json`` (its sidecar)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from avf.assets import locate as locate_asset
from avf.config.data import DataConfig, DatasetSpec, FaceConfig
from avf.data.adapters import RawClip
from avf.data.audio import audio_duration
from avf.data.face import crop_clip, get_detector, get_landmark_model
from avf.data.parallel import run_tasks
from avf.data.report import StageReport
from avf.data.stages.common import digest, file_stamp, prune_stale, read_sidecar, remove_temps, worker_results
from avf.data.stages.scan import report_scan, scan_dataset
from avf.data.video import MediaError, VideoFrame, image_files, iter_frames, iter_image_folder, write_jpeg_clip
from avf.utils.io import atomic_path, write_json
from avf.utils.progress import track

__all__ = ["FaceJob", "face_job", "frame_folder_timing", "run_faces"]

FACE_VERSION = 1
FRAME_FOLDER_FPS = 25.0  # frame rate of a folder of images with neither a documented rate nor its own audio
PLAUSIBLE_FPS = (0.5, 240.0)  # a frame folder timed by its audio outside this range has a wrong or cut audio file
FrameTiming = Literal["release_fps", "audio_span", "assumed_fps"]


def frame_folder_timing(
    release_fps: float | None, audio: str | None, num_frames: int
) -> tuple[float, FrameTiming, str | None]:
    """(frame rate, rule, note) of a frame folder of ``num_frames`` images.

    ``release_fps``: the rate the adapter knows from the release (``extra["fps"]``). ``audio_span``: the
    frames span the clip's separate audio file, frame i at i / (N - 1) of its duration, which is how the
    official AVF-MAE / HiCMAE reader pairs frame folders with their wav. ``assumed_fps``: 25 fps, for a
    folder with neither, with an unreadable audio file (the audio stage reports it), or whose audio gives
    an implausible rate (the note says what it gave).
    """
    if release_fps:
        return float(release_fps), "release_fps", None
    if audio is None or num_frames < 2:
        return FRAME_FOLDER_FPS, "assumed_fps", None
    try:
        seconds = audio_duration(audio)
    except MediaError as e:
        return FRAME_FOLDER_FPS, "assumed_fps", f"audio unreadable: {e.reason}"
    fps = (num_frames - 1) / seconds if seconds else 0.0
    if not PLAUSIBLE_FPS[0] <= fps <= PLAUSIBLE_FPS[1]:
        note = f"{num_frames} frames over {seconds or 0:.2f} s of audio would be {fps:.1f} fps"
        return FRAME_FOLDER_FPS, "assumed_fps", note
    return fps, "audio_span", None


@dataclass(frozen=True)
class FaceJob:
    """One clip for the faces stage; ``frames``/``fps``/``start``/``end``/``crop`` follow ``RawClip.extra``."""

    clip_id: str
    video: str
    out_dir: str
    cfg: FaceConfig
    fingerprint: str
    frames: bool = False  # ``video`` is a folder of images
    fps: float = FRAME_FOLDER_FPS  # the release's frame rate of a frame folder (else it is timed by ``audio``)
    start: float | None = None
    end: float | None = None
    crop: str | None = None  # "left" / "right": the face must be in that half of the frame
    release_fps: bool = False  # ``fps`` came from the adapter (``extra["fps"]``)
    audio: str | None = None  # a frame folder's separate audio file, which times its frames

    @classmethod
    def for_clip(cls, clip: RawClip, out_dir: Path, cfg: FaceConfig) -> FaceJob:
        extra = clip.extra
        fields: dict[str, Any] = {
            "frames": bool(extra.get("frames", False)),
            "fps": float(extra.get("fps") or FRAME_FOLDER_FPS),
            "start": float(extra["start"]) if extra.get("start") is not None else None,
            "end": float(extra["end"]) if extra.get("end") is not None else None,
            "crop": str(extra["crop"]) if extra.get("crop") else None,
        }
        source: Any = file_stamp(clip.video_path)
        timing: dict[str, Any] = {}
        if fields["frames"] and clip.video_path.is_dir():
            source = [file_stamp(f) for f in sorted(clip.video_path.iterdir())]
            timing = {"release_fps": bool(extra.get("fps"))}
            if clip.audio_path is not None and not extra.get("fps"):
                timing["audio"] = str(clip.audio_path)
                source.append(file_stamp(clip.audio_path))
        # timing entries only for frame folders: a video clip's fingerprint depends on what its crops depend on
        fp = digest({"v": FACE_VERSION, "cfg": cfg.model_dump(mode="json"), "video": source, **fields, **timing})
        return cls(clip.clip_id, str(clip.video_path), str(out_dir), cfg, fp, **fields, **timing)

    def frame_source(self, fps: float) -> Iterator[VideoFrame]:
        if self.frames:
            return iter_image_folder(self.video, fps, self.start, self.end)
        return iter_frames(self.video, start=self.start, end=self.end)

    def timing(self) -> tuple[float, FrameTiming | None, str | None]:
        """(frame rate, rule, note) of a frame folder (read here, in the worker); a video's own timestamps rule."""
        if not self.frames:
            return self.fps, None, None
        try:
            images = len(image_files(self.video))
        except MediaError:
            images = 0  # the frame source reports the folder
        return frame_folder_timing(self.fps if self.release_fps else None, self.audio, images)


def face_job(job: FaceJob) -> dict[str, Any]:
    """Crop one clip; writes ``<clip_id>.mkv`` (when usable) and ``<clip_id>.json``; returns the sidecar."""
    out = Path(job.out_dir)
    sidecar: dict[str, Any] = {
        "version": FACE_VERSION,
        "fingerprint": job.fingerprint,
        "clip_id": job.clip_id,
        "source": job.video,
    }
    try:
        detector = get_detector(str(locate_asset(job.cfg.detector_model)), job.cfg.min_score)
        landmarks = get_landmark_model(str(locate_asset(job.cfg.landmark_model))) if job.cfg.align else None
        fps, timing, note = job.timing()
        result = crop_clip(job.video, job.cfg, detector, landmarks, frames=job.frame_source(fps), region=job.crop)
    except MediaError as e:
        sidecar["status"] = e.reason
        write_json(out / f"{job.clip_id}.json", sidecar)
        return sidecar
    times = result.times
    span = 0.0
    fps = 0.0
    if len(times) > 1:
        step = float(np.median(np.diff(times)))
        span = float(times[-1] - times[0]) + step
        fps = (len(times) - 1) / float(times[-1] - times[0]) if times[-1] > times[0] else 0.0
    elif len(times) == 1:
        span = 0.04
    sidecar.update(result.summary())
    sidecar.update(
        {
            "status": "ok" if result.ok else result.reason,
            "face_file": f"{job.clip_id}.mkv" if result.ok else None,
            "size": job.cfg.size,
            **({"timing": timing} if timing else {}),
            **({"timing_note": note} if note else {}),
            "duration_s": round(span, 6),
            "fps": round(fps, 4),
            "times": [round(float(t), 6) for t in times],
            "boxes": [
                [round(float(v), 2) if i < 3 else round(float(v), 4) for i, v in enumerate(s)] for s in result.states
            ],
        }
    )
    if result.ok:
        with atomic_path(out / f"{job.clip_id}.mkv", suffix=".mkv") as tmp:
            write_jpeg_clip(tmp, result.jpegs, times, job.cfg.size)
    write_json(out / f"{job.clip_id}.json", sidecar)
    return sidecar


def run_faces(
    spec: DatasetSpec, out_dir: Path, cfg: DataConfig, report: StageReport, ray_address: str | None = None
) -> None:
    """The faces stage over one dataset (see :mod:`avf.data.stages`)."""
    scan = scan_dataset(spec)
    report_scan(scan, report)
    out_dir.mkdir(parents=True, exist_ok=True)
    remove_temps(out_dir)
    jobs: list[FaceJob] = []
    for clip in scan.clips:
        if clip.clip_id in scan.rejected:
            continue
        job = FaceJob.for_clip(clip, out_dir, cfg.face)
        old = read_sidecar(out_dir / f"{clip.clip_id}.json")
        if old is not None and old.get("fingerprint") == job.fingerprint:
            if old.get("status") == "ok" and (out_dir / f"{clip.clip_id}.mkv").is_file():
                report.skipped += 1
                continue
            if old.get("status") not in (None, "ok"):
                report.fail(clip.video_path, clip.clip_id, str(old["status"]))
                continue
        jobs.append(job)
    results = run_tasks(face_job, jobs, workers=cfg.workers, executor=cfg.executor, ray_address=ray_address)
    with worker_results(results, out_dir) as results:
        for job, res in track(results, total=len(jobs), desc=f"faces {spec.name}"):
            if isinstance(res, BaseException):
                report.fail(job.video, job.clip_id, f"internal error: {type(res).__name__}: {res}")
            elif res.get("status") != "ok":
                report.fail(job.video, job.clip_id, str(res.get("status")))
            else:
                report.processed += 1
    report.extra["removed_stale"] = prune_stale(out_dir, scan.kept_ids(), (".json", ".mkv"))
