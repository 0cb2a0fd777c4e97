"""`avf data faces` on an IEMOCAP tree crops the speaker, for dialogs of both letters (real MediaPipe, real pixels)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from avf.cli import app
from avf.data.video import decode_jpeg, read_jpeg_clip
from tests.support import media

ROOT = Path(__file__).resolve().parents[2]
LEFT_FACE, RIGHT_FACE = "astronaut", "grace_hopper"
SIZE = (192, 192)  # (width, height) of each actor's half
UTTERANCES = ("F000", "M000")


def _dialog_tree(base: Path) -> Path:
    """Dialogs ``Ses01F_impro01`` and ``Ses02M_impro01``, each with one F and one M utterance."""
    root = base / "IEMOCAP_full_release"
    n = 40
    left, right = media.face_frames(n, SIZE, LEFT_FACE), media.face_frames(n, SIZE, RIGHT_FACE, seed=1)
    frames = [np.concatenate([a, b], axis=1) for a, b in zip(left, right, strict=True)]
    for session, letter in ((1, "F"), (2, "M")):
        dialog = f"Ses0{session}{letter}_impro01"
        session_dir = root / f"Session{session}"
        media.write_video(session_dir / "dialog" / "avi" / "DivX" / f"{dialog}.avi", frames)
        lines = []
        for k, speaker in enumerate(UTTERANCES):
            utterance = f"{dialog}_{speaker}"
            lines.append(f"[{0.1 + 0.8 * k:.4f} - {0.8 + 0.8 * k:.4f}]\t{utterance}\tneu\t[2.5, 2.5, 2.5]\n")
            wav = session_dir / "sentences" / "wav" / dialog / f"{utterance}.wav"
            media.write_wav(wav, media.tone_schedule((440,), 0.7, 16000), 16000)
        evaluation = session_dir / "dialog" / "EmoEvaluation" / f"{dialog}.txt"
        evaluation.parent.mkdir(parents=True, exist_ok=True)
        evaluation.write_text("".join(lines))
    return root


def _reference_tree(base: Path) -> Path:
    """One single-face clip per actor, cropped by the same stage: what each speaker's crop looks like."""
    root = base / "reference"
    for name in (LEFT_FACE, RIGHT_FACE):
        frames = media.face_frames(40, SIZE, name, seed=int(name == RIGHT_FACE))
        media.write_video(root / name / "clip.mp4", frames)
    return root


def _faces(tmp: Path, name: str, adapter: str, raw: Path) -> Path:
    params = {
        "data": {
            "datasets": {name: {"adapter": adapter, "raw_dir": str(raw), "roles": ["target"]}},
            "target": name,
            "face": {
                "detector_model": str(ROOT / "models/assets/face_detection_short_range.tflite"),
                "landmark_model": str(ROOT / "models/assets/face_landmark.tflite"),
            },
            "workers": 1,
        }
    }
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(params))
    out = tmp / f"faces_{name}"
    result = CliRunner().invoke(
        app, ["--params", str(path), "data", "faces", "--dataset", name, "--out", str(out), "--reports", str(tmp / "r")]
    )
    assert result.exit_code == 0, result.output
    return out


def _mean_crop(path: Path) -> np.ndarray:
    jpegs, _ = read_jpeg_clip(path)
    return np.mean([decode_jpeg(j).astype(np.float32) for j in jpegs], axis=0)


@pytest.mark.slow
def test_the_crop_shows_the_speaker_in_dialogs_of_both_letters(tmp_path: Path) -> None:
    dialogs = _faces(tmp_path, "iemocap", "iemocap", _dialog_tree(tmp_path))
    references = _faces(tmp_path, "reference", "folder", _reference_tree(tmp_path))
    look = {name: _mean_crop(references / f"{name}-clip.mkv") for name in (LEFT_FACE, RIGHT_FACE)}
    for dialog, left_letter in (("Ses01F_impro01", "F"), ("Ses02M_impro01", "M")):
        for speaker in UTTERANCES:
            crop = _mean_crop(dialogs / f"{dialog}_{speaker}.mkv")
            expected = LEFT_FACE if speaker[0] == left_letter else RIGHT_FACE
            other = RIGHT_FACE if expected == LEFT_FACE else LEFT_FACE
            near, far = (float(np.abs(crop - look[n]).mean()) for n in (expected, other))
            assert near < 0.5 * far, f"{dialog}_{speaker}: distance to {expected} {near:.1f}, to {other} {far:.1f}"
