"""RAVDESS: ``Actor_NN/MM-VV-EE-II-SS-RR-AA.{mp4,wav}`` (24 actors, 8 emotions, 6 folds of 4 actors).

File name fields: modality (01 full-AV, 02 video-only, 03 audio-only), vocal channel (01 speech,
02 song), emotion (01..08), intensity, statement, repetition, actor. Label = emotion - 1 (neutral,
calm, happy, sad, angry, fearful, disgust, surprised); fold = ceil(actor / 4); subject = ``Actor_NN``.

Sources (option ``source``):

- ``av``: the full-AV ``01-*.mp4`` files (video + their own audio track; ``audio_path`` is None).
- ``video+audio``: the HiCMAE pairing, faces from the video-only ``02-*.mp4`` and audio from the
  audio-only ``03-*.wav`` of the same recording (stems differ in field 1).
- ``auto`` (default): per recording, the full-AV file when present, else the 02 + 03 pair.

The clip id drops the modality field (``VV-EE-II-SS-RR-AA``) so that it names the recording, whatever
source was used; HiCMAE list lines (``.../02-01-...``) map onto it. Actor folders are found at the root
or one level down (each release zip unzips to its own ``Actor_NN/``), except inside the official
scripts' output folders (``face_aligned/``, ``audio_16k/``, ...). Song (channel 02) is skipped
unless ``include_song`` is true (HiCMAE uses speech only: 1,440 clips).
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any, ClassVar

from avf.data.adapters.base import Adapter, RawClip, ScanResult, register_adapter
from avf.data.adapters.common import ScanBuilder, finish_scan, opt_bool, opt_choice, require_dir

EMOTIONS = ("neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised")
_NAME = re.compile(r"^(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})$")
_ACTOR_DIR = re.compile(r"^Actor_(\d{2})$")
PREPROCESSED_DIRS = {"face_aligned", "audio_16k", "openface", "frames"}  # outputs of the official scripts


def fold_of_actor(actor: int) -> int:
    """Test fold (1..6) of an actor: four consecutive actors per fold."""
    return math.ceil(actor / 4)


@register_adapter("ravdess")
class RavdessAdapter(Adapter):
    task = "classification"
    classes: ClassVar[tuple[str, ...]] = EMOTIONS
    num_folds = 6
    metrics = ("uar", "war")

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.source = opt_choice(options, "source", "auto", ("auto", "av", "video+audio"))
        self.include_song = opt_bool(options, "include_song", False)

    def list_clip_id(self, frame_dir: str, audio_path: str | None = None) -> str:
        name = super().list_clip_id(frame_dir, audio_path)
        return name[3:] if _NAME.match(name) else name

    def _actor_dirs(self, root: Path) -> list[Path]:
        found = [p for p in root.iterdir() if p.is_dir() and _ACTOR_DIR.match(p.name)]
        for sub in root.iterdir():
            if sub.is_dir() and not _ACTOR_DIR.match(sub.name) and sub.name not in PREPROCESSED_DIRS:
                found += [p for p in sub.iterdir() if p.is_dir() and _ACTOR_DIR.match(p.name)]
        return sorted(found)

    def scan(self, root: Path) -> ScanResult:
        root = require_dir(root)
        actor_dirs = self._actor_dirs(root)
        if not actor_dirs:
            raise FileNotFoundError(f"no Actor_NN folders under the RAVDESS root {root}")
        out = ScanBuilder(self.name)
        # recording key (fields 2..7) -> {modality: path}
        recordings: dict[str, dict[str, Path]] = {}
        for actor_dir in actor_dirs:
            folder_actor = int(_ACTOR_DIR.match(actor_dir.name).group(1))  # type: ignore[union-attr]
            for path in sorted(actor_dir.iterdir()):
                if path.name.startswith(".") or path.suffix.lower() not in (".mp4", ".wav"):
                    continue
                match = _NAME.match(path.stem)
                if not match:
                    out.problem(path, "malformed RAVDESS name (expected MM-VV-EE-II-SS-RR-AA)")
                    continue
                modality, channel, emotion, _, _, _, actor = (int(g) for g in match.groups())
                want_ext = ".wav" if modality == 3 else ".mp4"
                if modality not in (1, 2, 3) or path.suffix.lower() != want_ext:
                    out.problem(path, f"unknown modality {match.group(1)} for a {path.suffix} file")
                    continue
                if channel not in (1, 2) or not 1 <= emotion <= 8:
                    out.problem(path, f"unknown vocal channel {channel:02d} or emotion {emotion:02d}")
                    continue
                if actor != folder_actor:
                    out.problem(path, f"actor {actor:02d} in the name but the file is in {actor_dir.name}")
                    continue
                if channel == 2 and not self.include_song:
                    continue
                slot = recordings.setdefault(path.stem[3:], {})
                if match.group(1) in slot:
                    out.problem(path, f"same recording also at {slot[match.group(1)]}; skipped")
                    continue
                slot[match.group(1)] = path
        for key in sorted(recordings):
            self._add(out, key, recordings[key])
        return finish_scan(self, out, root)

    def _add(self, out: ScanBuilder, key: str, files: dict[str, Path]) -> None:
        full, video_only, audio_only = files.get("01"), files.get("02"), files.get("03")
        video: Path | None
        audio: Path | None = None
        if self.source != "video+audio" and full is not None:
            video, source = full, "av"
        elif self.source != "av" and video_only is not None:
            if audio_only is None:
                out.problem(video_only, f"video-only file without its audio-only pair 03-{key}.wav; skipped")
                return
            video, audio, source = video_only, audio_only, "video+audio"
        else:
            missing = "full-AV 01-*.mp4" if self.source == "av" else "video-only 02-*.mp4"
            if self.source == "auto":
                missing = "video (01- or 02-*.mp4)"
            present = next(iter(files.values()))
            out.problem(present, f"no {missing} file for recording {key} (source={self.source}); skipped")
            return
        channel, emotion, intensity, statement, repetition, actor = (int(x) for x in key.split("-"))
        out.add(
            RawClip(
                clip_id=key,
                dataset=self.name,
                subject=f"Actor_{actor:02d}",
                video_path=video,
                audio_path=audio,
                label=emotion - 1,
                label_name=EMOTIONS[emotion - 1],
                test_fold=fold_of_actor(actor),
                extra={
                    "source": source,
                    "vocal_channel": "speech" if channel == 1 else "song",
                    "intensity": "normal" if intensity == 1 else "strong",
                    "statement": statement,
                    "repetition": repetition,
                    "gender": "male" if actor % 2 else "female",
                },
            )
        )
