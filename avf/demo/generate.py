"""Generate both demo datasets: one task per actor in a process pool, written atomically.

Every random draw comes from a seed derived from ``(cfg.seed, purpose, dataset, actor or clip name)``,
so the output does not depend on the worker count or the order in which actors finish.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from avf.config.data import SynthConfig
from avf.demo import cues, faces, layouts, media, voice
from avf.utils.io import atomic_path
from avf.utils.progress import track
from avf.utils.seed import derive_seed

if TYPE_CHECKING:
    from rich.table import Table

log = logging.getLogger(__name__)
WAV_RATE = 16000
MANIFEST = "synth.json"


@dataclass
class Actor:
    """An actor ready to perform: identity (look + voice) and renderer."""

    spec: layouts.ActorSpec
    appearance: faces.Appearance
    voice: voice.Voice
    rig: faces.Rig

    @classmethod
    def build(cls, spec: layouts.ActorSpec, cfg: SynthConfig) -> Actor:
        look, v = identity(spec, cfg)
        return cls(spec, look, v, faces.Rig(look, cfg.frame_size))


def identity(spec: layouts.ActorSpec, cfg: SynthConfig) -> tuple[faces.Appearance, voice.Voice]:
    """An actor's look and voice, drawn from seeds of (cfg.seed, dataset, actor id)."""
    look = faces.sample_appearance(spec.source, np.random.default_rng(derive_seed(cfg.seed, "look", spec.key)))
    return look, voice.actor_voice(spec.male, np.random.default_rng(derive_seed(cfg.seed, "voice", spec.key)))


@dataclass
class Clip:
    """One rendered clip: frames, audio at the synthesis rate and the drawn cues."""

    frames: np.ndarray  # (T, H, W, 3) RGB uint8
    audio: np.ndarray  # float32 mono at voice.SR
    face: cues.FaceCues
    voice: cues.VoiceCues
    expr: np.ndarray  # (T, len(faces.EXPRESSIONS)) per-frame coefficients
    head: np.ndarray  # (T, len(faces.HEAD))


def render_clip(actor: Actor, emotion: str, strength: float, text: str, seed: int, cfg: SynthConfig) -> Clip:
    """Render one clip. Independent streams per purpose keep each modality's draws emotion-independent."""
    s_face, s_voice, s_plan, s_motion, s_audio = (
        np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(5)
    )
    fc = cues.sample_face(emotion, strength, s_face)
    vc = cues.sample_voice(emotion, strength, s_voice)
    plan = voice.make_plan(text, vc.rate * actor.voice.rate_factor, cfg.duration_s, s_plan)
    audio = voice.synthesize(plan, vc, actor.voice, cfg.duration_s, s_audio)
    times = np.arange(round(cfg.duration_s * cfg.fps)) / cfg.fps
    expr, head = faces.face_tracks(fc, plan, times, actor.appearance.expressivity, s_motion)
    frames = np.stack([actor.rig.render(expr[i], head[i]) for i in range(len(times))])
    return Clip(frames, audio, fc, vc, expr, head)


def _round(d: dict[str, float]) -> dict[str, float]:
    return {k: round(float(v), 4) for k, v in d.items()}


def _render_actor(spec: layouts.ActorSpec, cfg: SynthConfig, root: str) -> list[dict[str, Any]]:
    """Worker task: build the actor and write all its clips under ``root``; returns manifest rows."""
    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        actor = Actor.build(spec, cfg)
        rows = []
        for c in spec.clips:
            clip = render_clip(
                actor,
                c.emotion,
                c.strength * cfg.cue_scale,
                c.text,
                derive_seed(cfg.seed, "clip", c.dataset, c.name),
                cfg,
            )
            video = Path(root) / c.video
            video.parent.mkdir(parents=True, exist_ok=True)
            media.write_av(
                video,
                clip.frames,
                cfg.fps,
                voice.resample(clip.audio, cfg.sample_rate),
                cfg.sample_rate,
                "flv" if c.video.endswith(".flv") else "mp4",
                cfg.crf,
            )
            size = video.stat().st_size
            if c.wav is not None:
                wav = Path(root) / c.wav
                wav.parent.mkdir(parents=True, exist_ok=True)
                media.write_wav(wav, voice.resample(clip.audio, WAV_RATE), WAV_RATE)
                size += wav.stat().st_size
            rows.append(
                {
                    "dataset": c.dataset,
                    "name": c.name,
                    "video": c.video,
                    "wav": c.wav,
                    "actor": spec.actor,
                    "male": spec.male,
                    "source": spec.source,
                    "emotion": c.emotion,
                    "strength": c.strength,
                    "text": c.text,
                    "seconds": round(len(clip.frames) / cfg.fps, 4),
                    "bytes": size,
                    "mouth_xy": [round(float(x), 2) for x in actor.rig.mouth_centre],
                    "iod_px": round(actor.rig.u, 2),
                    "face": _round(asdict(clip.face)),
                    "voice": _round(asdict(clip.voice)),
                }
            )
        return rows
    finally:
        cv2.setNumThreads(threads)


@dataclass
class SynthSummary:
    """What :func:`generate_all` made (counts per dataset and emotion, media seconds, bytes, wall time)."""

    out: Path
    clips: list[dict[str, Any]] = field(repr=False)
    elapsed_s: float
    workers: int

    @property
    def counts(self) -> dict[tuple[str, str], int]:
        return dict(sorted(Counter((c["dataset"], c["emotion"]) for c in self.clips).items()))

    @property
    def seconds(self) -> float:
        return float(sum(c["seconds"] for c in self.clips))

    @property
    def bytes(self) -> int:
        return int(sum(c["bytes"] for c in self.clips))

    def line(self) -> str:
        """The totals of :meth:`table` on one line (for logs)."""
        per = Counter[str]()
        for c in self.clips:
            per[c["dataset"]] += 1
        sets = ", ".join(f"{ds} {n}" for ds, n in sorted(per.items()))
        return (
            f"avf data synth -> {self.out}: {len(self.clips)} clips ({sets}), {self.seconds:.1f} s, "
            f"{self.bytes / 1e6:.1f} MB ({self.elapsed_s:.1f} s wall, {self.workers} workers)"
        )

    def table(self) -> Table:
        """A rich Table: clips and media seconds per dataset and emotion, with totals."""
        from rich.table import Table

        t = Table(title=f"avf data synth -> {self.out}  ({self.elapsed_s:.1f} s wall, {self.workers} workers)")
        for col in ("dataset", "emotion", "clips", "seconds"):
            t.add_column(col, justify="right" if col in ("clips", "seconds") else "left")
        secs: Counter[tuple[str, str]] = Counter()
        for c in self.clips:
            secs[(c["dataset"], c["emotion"])] += c["seconds"]
        for (ds, emo), n in self.counts.items():
            t.add_row(ds, emo, str(n), f"{secs[(ds, emo)]:.1f}")
        t.add_section()
        t.add_row("total", f"{self.bytes / 1e6:.1f} MB", str(len(self.clips)), f"{self.seconds:.1f}")
        return t


def generate_all(cfg: SynthConfig, out: Path, workers: int = 2) -> SynthSummary:
    """Generate the RAVDESS- and CREMA-D-style sets under ``out`` (replaced atomically) and a manifest."""
    start = time.monotonic()
    actors = layouts.plan_actors(cfg)
    rows: list[dict[str, Any]] = []
    out = Path(out)
    with atomic_path(out) as tmp:
        tmp.mkdir(parents=True)
        if workers <= 1:
            for spec in track(actors, desc="synth actors"):
                rows += _render_actor(spec, cfg, str(tmp))
        else:
            ctx = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
                futures = [pool.submit(_render_actor, spec, cfg, str(tmp)) for spec in actors]
                for fut in track(as_completed(futures), total=len(futures), desc="synth actors"):
                    rows += fut.result()
        rows.sort(key=lambda r: r["video"])
        manifest = {
            "generator": "avf.demo",
            "config": cfg.model_dump(mode="json"),
            "video_only_pairs": cues.video_only_pairs(),
            "audio_only_pairs": cues.audio_only_pairs(),
            "clips": rows,
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
    summary = SynthSummary(out, rows, time.monotonic() - start, workers)
    log.debug(  # the CLI prints the summary itself
        "synth: %d clips, %.0f s of media, %.1f MB in %.1f s",
        len(rows),
        summary.seconds,
        summary.bytes / 1e6,
        summary.elapsed_s,
    )
    return summary
