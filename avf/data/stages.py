"""The four data stages as library functions (the ``avf data`` commands are thin wrappers).

``faces`` -> ``audio`` -> ``manifest`` -> ``shards``, each over one dataset of ``params.data.datasets``:

- **faces** (:func:`run_faces`): adapter scan, then per clip ``<out>/<clip_id>.mkv`` (JPEG face frames,
  see ``avf.data.face``) and ``<out>/<clip_id>.json`` (status or reason, coverage, exact frame times,
  crop boxes, fingerprint).
- **audio** (:func:`run_audio`): per clip with a face clip, ``<out>/<clip_id>.wav`` (16 kHz mono,
  sample 0 = first face frame) and ``<out>/<clip_id>.json`` (audio status, level, fingerprint).
- **manifest** (:func:`run_manifest`): the Parquet clip index (``avf.data.manifest``).
- **shards** (:func:`run_shards`): WebDataset shards of the usable clips (``avf.data.shards``).

Outputs are written atomically (temp file, then rename). A clip whose sidecar carries the same
*fingerprint* (stage version, the stage's parameters, and the size and modification time of its
inputs) is skipped on a re-run, so an interrupted stage resumes and a changed parameter redoes the
work; deterministic failures are cached the same way, unexpected errors are retried. Failures go to
the :class:`~avf.data.report.StageReport` with the file and the reason.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
from collections.abc import Generator, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from avf.config.data import AudioConfig, DataConfig, DatasetSpec, FaceConfig
from avf.data.adapters.base import Problem, RawClip, get_adapter
from avf.data.parallel import run_tasks
from avf.data.report import StageReport
from avf.utils.io import atomic_path, write_json
from avf.utils.progress import track

__all__ = [
    "ScanOutcome",
    "audio_job",
    "face_job",
    "run_audio",
    "run_faces",
    "run_manifest",
    "run_shards",
    "scan_dataset",
    "shard_job",
]

FACE_VERSION = 1
AUDIO_VERSION = 1
SHARD_VERSION = 1
AUDIO_MARGIN_S = 0.5  # audio kept past the last face frame (a window may end up to `stride` frames later)
FRAME_FOLDER_FPS = 25.0  # frame rate of a folder of images unless the adapter sets ``extra["fps"]``


def _digest(payload: Any) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _stat(path: str | Path | None) -> list[Any]:
    if path is None:
        return []
    p = Path(path)
    try:
        st = p.stat()
    except OSError:
        return [str(p), None]
    return [str(p), st.st_size, st.st_mtime_ns]


def _missing(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def _read_sidecar(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None


# --------------------------------------------------------------------------------------------- scan


@dataclass
class ScanOutcome:
    """Clips to process, the adapter's problems, and clips rejected before processing (id -> reason)."""

    clips: list[RawClip]
    problems: list[Problem]
    rejected: dict[str, str]


def scan_dataset(spec: DatasetSpec) -> ScanOutcome:
    """Run the dataset's adapter; clip ids used by more than one file are rejected (every copy).

    Raises ``FileNotFoundError`` for a missing raw folder and ``KeyError`` for an unknown adapter.
    """
    adapter = get_adapter(spec.adapter, **spec.options)
    result = adapter.scan(Path(spec.raw_dir))
    by_id: dict[str, list[RawClip]] = {}
    for clip in result.clips:
        by_id.setdefault(clip.clip_id, []).append(clip)
    clips, problems, rejected = [], list(result.problems), {}
    for clip_id, group in by_id.items():
        clips.append(group[0])
        if len(group) > 1:
            paths = [str(c.video_path) for c in group]
            rejected[clip_id] = f"duplicate clip id: {clip_id!r} is used by {len(group)} files"
            for c in group:
                others = ", ".join(p for p in paths if p != str(c.video_path))
                problems.append(Problem(str(c.video_path), f"duplicate clip id: {clip_id!r} also used by {others}"))
    return ScanOutcome(clips, problems, rejected)


def _report_scan(scan: ScanOutcome, report: StageReport) -> None:
    for p in scan.problems:
        report.fail(p.path, None, p.reason)


def _remove_temps(out_dir: Path) -> None:
    """Delete half-written temp files (``.<name>.<random>.tmp`` from ``atomic_path``) that a killed run
    left behind, so they never end up in the stage's DVC output."""
    for p in out_dir.glob(".*.tmp"):
        if p.is_file():
            p.unlink(missing_ok=True)


@contextlib.contextmanager
def _worker_results(results: Generator[Any, None, None], out_dir: Path) -> Iterator[Generator[Any, None, None]]:
    """``results`` of :func:`run_tasks` whose workers write into ``out_dir``. Interrupted (SIGTERM, Ctrl-C,
    an error): end the workers first, then delete the temp file a worker killed mid-write left behind."""
    try:
        yield results
    except BaseException:
        results.close()  # the pool terminates and joins its worker processes (Ray: cancels the tasks)
        _remove_temps(out_dir)
        raise


def _prune(out_dir: Path, keep: set[str], suffixes: Sequence[str]) -> int:
    """Remove outputs of clips that are no longer in the dataset (stale after a rescan)."""
    removed = 0
    for suffix in suffixes:
        for p in out_dir.glob(f"*{suffix}"):
            if p.name.startswith("."):
                continue
            if p.name[: -len(suffix)] not in keep:
                p.unlink()
                removed += 1
    return removed


# -------------------------------------------------------------------------------------------- faces


@dataclass(frozen=True)
class FaceJob:
    """One clip for the faces stage; ``frames``/``fps``/``start``/``end``/``crop`` follow ``RawClip.extra``."""

    clip_id: str
    video: str
    out_dir: str
    cfg: FaceConfig
    fingerprint: str
    frames: bool = False  # ``video`` is a folder of images
    fps: float = FRAME_FOLDER_FPS  # frame rate of a frame folder
    start: float | None = None
    end: float | None = None
    crop: str | None = None  # "left" / "right": the face must be in that half of the frame

    @classmethod
    def for_clip(cls, clip: RawClip, out_dir: Path, cfg: FaceConfig) -> FaceJob:
        extra = clip.extra
        fields = {
            "frames": bool(extra.get("frames", False)),
            "fps": float(extra.get("fps", FRAME_FOLDER_FPS)),
            "start": float(extra["start"]) if extra.get("start") is not None else None,
            "end": float(extra["end"]) if extra.get("end") is not None else None,
            "crop": str(extra["crop"]) if extra.get("crop") else None,
        }
        source = _stat(clip.video_path)
        if fields["frames"] and clip.video_path.is_dir():
            source = [_stat(f) for f in sorted(clip.video_path.iterdir())]
        fp = _digest({"v": FACE_VERSION, "cfg": cfg.model_dump(mode="json"), "video": source, **fields})
        return cls(clip.clip_id, str(clip.video_path), str(out_dir), cfg, fp, **fields)

    def frame_source(self) -> Any:
        from avf.data.video import iter_frames, iter_image_folder

        if self.frames:
            return iter_image_folder(self.video, self.fps, self.start, self.end)
        return iter_frames(self.video, start=self.start, end=self.end)


def face_job(job: FaceJob) -> dict[str, Any]:
    """Crop one clip; writes ``<clip_id>.mkv`` (when usable) and ``<clip_id>.json``; returns the sidecar."""
    from avf.data.face import crop_clip, get_detector, get_landmark_model
    from avf.data.video import MediaError, write_jpeg_clip

    out = Path(job.out_dir)
    sidecar: dict[str, Any] = {
        "version": FACE_VERSION,
        "fingerprint": job.fingerprint,
        "clip_id": job.clip_id,
        "source": job.video,
    }
    try:
        detector = get_detector(job.cfg.detector_model, job.cfg.min_score)
        landmarks = get_landmark_model(job.cfg.landmark_model) if job.cfg.align else None
        result = crop_clip(job.video, job.cfg, detector, landmarks, frames=job.frame_source(), region=job.crop)
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
    """The faces stage over one dataset (see the module docstring)."""
    scan = scan_dataset(spec)
    _report_scan(scan, report)
    out_dir.mkdir(parents=True, exist_ok=True)
    _remove_temps(out_dir)
    jobs: list[FaceJob] = []
    for clip in scan.clips:
        if clip.clip_id in scan.rejected:
            continue
        job = FaceJob.for_clip(clip, out_dir, cfg.face)
        old = _read_sidecar(out_dir / f"{clip.clip_id}.json")
        if old is not None and old.get("fingerprint") == job.fingerprint:
            if old.get("status") == "ok" and (out_dir / f"{clip.clip_id}.mkv").is_file():
                report.skipped += 1
                continue
            if old.get("status") not in (None, "ok"):
                report.fail(clip.video_path, clip.clip_id, str(old["status"]))
                continue
        jobs.append(job)
    results = run_tasks(face_job, jobs, workers=cfg.workers, executor=cfg.executor, ray_address=ray_address)
    with _worker_results(results, out_dir) as results:
        for job, res in track(results, total=len(jobs), desc=f"faces {spec.name}"):
            if isinstance(res, BaseException):
                report.fail(job.video, job.clip_id, f"internal error: {type(res).__name__}: {res}")
            elif res.get("status") != "ok":
                report.fail(job.video, job.clip_id, str(res.get("status")))
            else:
                report.processed += 1
    keep = {c.clip_id for c in scan.clips if c.clip_id not in scan.rejected}
    report.extra["removed_stale"] = _prune(out_dir, keep, (".json", ".mkv"))


# -------------------------------------------------------------------------------------------- audio


@dataclass(frozen=True)
class AudioJob:
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
    from avf.data.audio import ClipAudio, extract_clip_audio, write_wav
    from avf.data.video import MediaError

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
    """The audio stage: every clip with a usable face clip (see the module docstring)."""
    scan = scan_dataset(spec)
    _report_scan(scan, report)
    out_dir.mkdir(parents=True, exist_ok=True)
    _remove_temps(out_dir)
    jobs: list[AudioJob] = []
    for clip in scan.clips:
        if clip.clip_id in scan.rejected:
            continue
        face = _read_sidecar(faces_dir / f"{clip.clip_id}.json")
        if face is None or face.get("status") != "ok" or not face.get("times"):
            report.excluded += 1
            continue
        t0 = float(face["times"][0])
        fp = _digest(
            {
                "v": AUDIO_VERSION,
                "cfg": cfg.audio.model_dump(mode="json"),
                "face": face.get("fingerprint"),
                "src": _stat(clip.audio_path or clip.video_path),
                "no_audio": bool(clip.extra.get("no_audio", False)),
                "start": clip.extra.get("start"),
            }
        )
        old = _read_sidecar(out_dir / f"{clip.clip_id}.json")
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
    with _worker_results(results, out_dir) as results:
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
    keep = {c.clip_id for c in scan.clips if c.clip_id not in scan.rejected}
    report.extra["removed_stale"] = _prune(out_dir, keep, (".json", ".wav"))


# ----------------------------------------------------------------------------------------- manifest


def run_manifest(spec: DatasetSpec, faces_dir: Path, audio_dir: Path, out_path: Path, report: StageReport) -> Any:
    """Build, validate and write the dataset's manifest; every unusable clip is a failure line."""
    from avf.data.manifest import build_manifest, write_manifest

    scan = scan_dataset(spec)
    _report_scan(scan, report)
    faces: dict[str, dict[str, Any]] = {}
    audios: dict[str, dict[str, Any]] = {}
    for clip in scan.clips:
        if (f := _read_sidecar(faces_dir / f"{clip.clip_id}.json")) is not None:
            faces[clip.clip_id] = f
        if (a := _read_sidecar(audio_dir / f"{clip.clip_id}.json")) is not None:
            audios[clip.clip_id] = a
    df = build_manifest(spec.name, scan.clips, faces, audios, faces_dir, audio_dir, scan.rejected)
    write_manifest(df, out_path)
    for row in df.itertuples():
        if row.status == "ok":
            report.processed += 1
            if row.audio_status != "ok":
                report.flags[f"audio {row.audio_status}"] += 1
        elif row.clip_id not in scan.rejected:  # duplicates are already listed with every file
            report.fail(row.video_path, row.clip_id, str(row.status))
    report.extra["rows"] = len(df)
    return df


# ------------------------------------------------------------------------------------------- shards


@dataclass(frozen=True)
class ShardJob:
    key: str
    row: dict[str, Any]
    audio: AudioConfig
    fbank: bool


def shard_job(job: ShardJob) -> dict[str, bytes]:
    """The tar members of one sample (see ``avf.data.shards``): meta, JPEG frames, fbank or pcm."""
    from avf.data.audio import log_mel, read_wav
    from avf.data.shards import npy_bytes
    from avf.data.video import MediaError, read_jpeg_clip

    row = job.row
    face_path = Path(row["face_path"])
    face = _read_sidecar(face_path.with_suffix(".json"))
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


def run_shards(dataset: str, manifest_path: Path, out_dir: Path, cfg: DataConfig, report: StageReport) -> None:
    """Write the usable clips of a manifest as shards (whole directory replaced atomically)."""
    from avf.data.manifest import read_manifest
    from avf.data.shards import INDEX_NAME, ShardIndex, ShardWriter, sample_key

    df = read_manifest(manifest_path)
    ok = df[df["status"] == "ok"]
    report.excluded = len(df) - len(ok)
    rows = [{k: (None if _missing(v) else v) for k, v in r.items()} for r in ok.to_dict("records")]
    inputs: list[str | Path] = [manifest_path]
    for r in rows:
        inputs += [r["face_path"], Path(r["face_path"]).with_suffix(".json"), r["audio_path"]]
    fingerprint = _digest(
        {
            "v": SHARD_VERSION,
            "shards": cfg.shards.model_dump(mode="json"),
            "audio": cfg.audio.model_dump(mode="json"),
            "dataset": dataset,
            "inputs": [_stat(p) for p in inputs],
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


# params sections each data stage reads (logged with its MLflow run)
DATA_STAGE_SECTIONS = {
    "faces": ("data.face",),
    "audio": ("data.audio",),
    "manifest": ("data.face", "data.audio"),
    "shards": ("data.shards", "data.audio"),
}


def track_report(params: Any, report: StageReport, where: Path) -> str | None:
    """Record a finished data stage in MLflow: one run per stage and dataset under ``<prefix>/data``,
    with the stage's parameters, its counts and timings as metrics and ``summary.json`` / ``failures.csv``
    as artifacts. Returns the run id; None when ``tracking.log_data_stages`` is off or the store is down
    (a warning: the stage's outputs are valid without it)."""
    if not params.tracking.log_data_stages:
        return None
    import logging

    from avf import tracking

    summary = report.summary(params.data.max_fail_frac)  # what ``report.write`` put in summary.json
    metrics = {k: float(v) for k, v in summary.items() if isinstance(v, int | float) and not isinstance(v, bool)}
    try:
        with tracking.stage_run(
            params,
            stage=report.stage,
            sections=DATA_STAGE_SECTIONS.get(report.stage, ("data",)),
            dataset=report.dataset,
            experiment=f"{params.tracking.experiment_prefix}/data",
            run_name=f"{report.stage}-{report.dataset}",
            system_metrics=False,
        ) as run:
            run.log_metrics(metrics, step=0)
            for name in ("summary.json", "failures.csv"):
                if (where / name).exists():
                    run.log_artifact(str(where / name), "report")
            return run.run_id
    except tracking.TrackingUnavailableError as exc:
        logging.getLogger(__name__).warning("%s %s not recorded in MLflow: %s", report.stage, report.dataset, exc)
        return None
