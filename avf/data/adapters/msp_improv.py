"""MSP-IMPROV: 4 classes (A H N S), 6-fold leave-one-session-out.

Layout: ``Video/session{1..6}/S{01..20}{A,H,N,S}/{P,R,S,T}/MSP-IMPROV-<id>.avi`` and the same tree under
``Audio/`` with ``.wav`` (48 kHz). Id ``S01A-F01-P-FM01``: sentence 01 + target emotion A, speaker
gender F + session 01, condition (P natural interaction, R target-read, S other-improvised,
T target-improvised), opaque turn code. Clip id = file stem (``MSP-IMPROV-S01A-F01-P-FM01``), subject =
speaker (``F01``), fold = session.

Labels come from the release's evaluation file, **not** from the target letter in the name. Its exact
format is not documented publicly; assumed (and parsed) are lines
``<MSP|UTD>-IMPROV-<id>.avi; <cat>; A:<f>; V:<f>; D:<f>; N:<f>;`` where ``<cat>`` is the consensus
category; other lines (per-evaluator rows) are ignored. Option ``labels`` names the file (default: the
first of ``Evalution.txt`` — the release's own spelling — ``Evaluation.txt``, ``Labels/Evalution.txt``,
``Labels/Evaluation.txt``). Categories other than A, H, N, S (``O``, ``X``: no agreement) are reported
and dropped. The A/V/D/N means go to ``extra``.
"""

from __future__ import annotations

import re
from pathlib import Path

from avf.data.adapters.base import Adapter, RawClip, ScanResult, register_adapter
from avf.data.adapters.common import ScanBuilder, finish_scan, opt_path, require_dir

CLASSES = ("A", "H", "N", "S")
LABEL_FILES = ("Evalution.txt", "Evaluation.txt", "Labels/Evalution.txt", "Labels/Evaluation.txt")
_NAME = re.compile(r"^MSP-IMPROV-S(\d{2})([AHNS])-([FM])(\d{2})-([PRST])-([FM]{2}\d{2})$")
_LINE = re.compile(r"^\s*(?:MSP|UTD)-IMPROV-(\S+?)\.(?:avi|wav)\s*;\s*([^;]+?)\s*;(.*)$", re.IGNORECASE)
_SCORE = re.compile(r"([AVDN])\s*:\s*([-+0-9.eE]+)")


def parse_evaluation(path: Path) -> dict[str, tuple[str, dict[str, float]]]:
    """``id -> (category, {A, V, D, N means})`` from an evaluation file (consensus lines only)."""
    out: dict[str, tuple[str, dict[str, float]]] = {}
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        match = _LINE.match(line)
        if match:
            scores = {k: float(v) for k, v in _SCORE.findall(match.group(3))}
            out.setdefault(f"MSP-IMPROV-{match.group(1)}", (match.group(2).strip().upper(), scores))
    return out


@register_adapter("msp_improv")
class MspImprovAdapter(Adapter):
    task = "classification"
    classes = CLASSES
    num_folds = 6
    metrics = ("uar", "war")

    def _label_file(self, root: Path) -> Path:
        given = opt_path(self.options, "labels", root)
        candidates = [given] if given is not None else [root / name for name in LABEL_FILES]
        for path in candidates:
            if path.is_file():
                return path
        raise FileNotFoundError(f"MSP-IMPROV: no evaluation file, looked for {[str(p) for p in candidates]}")

    def scan(self, root: Path) -> ScanResult:
        root = require_dir(root)
        if not (root / "Video").is_dir():
            raise FileNotFoundError(f"MSP-IMPROV root {root} has no Video/ folder")
        labels = parse_evaluation(self._label_file(root))
        out = ScanBuilder(self.name)
        for video in sorted((root / "Video").glob("session*/*/*/*.avi")):
            match = _NAME.match(video.stem)
            if not match:
                out.problem(video, "malformed MSP-IMPROV name (expected MSP-IMPROV-SxxE-Gss-C-TTnn)")
                continue
            sentence, target, gender, session, condition, _ = match.groups()
            if video.parent.parent.parent.name != f"session{int(session)}":
                out.problem(video, f"session {session} in the name but the file is in {video.parts[-4]}")
                continue
            entry = labels.get(video.stem)
            if entry is None:
                out.problem(video, "no label in the evaluation file")
                continue
            category, scores = entry
            if category not in CLASSES:
                out.problem(video, f"consensus label {category!r} is not one of A/H/N/S (no agreement); dropped")
                continue
            wav = root / "Audio" / video.relative_to(root / "Video").with_suffix(".wav")
            if not wav.is_file():
                out.problem(video, f"audio missing: no {wav.relative_to(root)}")
                continue
            out.add(
                RawClip(
                    clip_id=video.stem,
                    dataset=self.name,
                    subject=f"{gender}{session}",
                    video_path=video,
                    audio_path=wav,
                    label=CLASSES.index(category),
                    label_name=category,
                    test_fold=int(session),
                    extra={
                        "sentence": int(sentence),
                        "target_emotion": target,
                        "condition": condition,
                        **{f"mean_{k.lower()}": v for k, v in scores.items()},
                    },
                )
            )
        return finish_scan(self, out, root)
