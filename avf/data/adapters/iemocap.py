"""IEMOCAP: 4 classes, 5-fold leave-one-session-out, utterances cut from two-actor dialog videos.

Layout (``IEMOCAP_full_release/``): ``Session{1..5}/dialog/EmoEvaluation/<dialog>.txt`` (header lines
``[start - end]<TAB><utterance><TAB><cat><TAB>[V, A, D]``), ``Session{N}/dialog/avi/DivX/<dialog>.avi``
(both actors in one frame) and ``Session{N}/sentences/wav/<dialog>/<utterance>.wav``.

Protocol: the usual 4-class set, neu + hap + ang + sad with **excited merged into happy** (option
``merge_excited``, default true; false drops ``exc``): 5,531 utterances. Other categories (fru, sur,
fea, dis, oth, xxx) are outside the protocol and skipped silently. The index order is not published;
pinned here as ang 0, hap 1, neu 2, sad 3 (alphabetical codes). Fold = session, subject =
``Ses0N`` + the speaking actor (``F``/``M``), clip id = utterance id.

An utterance's video is a time window of the dialog video cropped to the speaker's half of the frame:
``video_path`` is the dialog ``.avi`` and ``extra`` carries ``start``/``end`` (seconds) and ``crop``
(``left``/``right``); the face/video stage must honour them. The left half shows the actor whose gender
is the dialog's letter (``Ses01F_*``: the female actor on the left, ``Ses01M_*``: the male), the
utterance's own letter (``..._F000``, ``..._M012``) names the speaker, so the speaker is on the left
exactly when the two letters agree (the rule of MERTools' IEMOCAP preprocessing,
``zeroQiaoba/MERTools:MER2024/toolkit/preprocess/iemocap.py``). ``extra['vad']`` holds the mean
valence, activation, dominance.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from avf.data.adapters.base import Adapter, RawClip, ScanResult, register_adapter
from avf.data.adapters.common import ScanBuilder, finish_scan, opt_bool, require_dir

CLASSES = ("ang", "hap", "neu", "sad")
_HEADER = re.compile(r"^\[\s*([\d.]+)\s*-\s*([\d.]+)\s*\]\s+(\S+)\s+(\w+)\s+\[([^\]]*)\]")
_UTTERANCE = re.compile(r"^Ses(\d{2})([FM])_\S+_([FM])[0-9A-Z]*\d{2,3}$")
_SESSION = re.compile(r"^Session(\d)$")


@register_adapter("iemocap")
class IemocapAdapter(Adapter):
    task = "classification"
    classes = CLASSES
    num_folds = 5
    metrics = ("uar", "war")

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.merge_excited = opt_bool(options, "merge_excited", True)
        if "female_side" in options:
            raise ValueError(
                "iemocap: option female_side is not supported: the crop side follows the dialog's and the "
                "utterance's gender letters (see the adapter's docstring)"
            )

    def scan(self, root: Path) -> ScanResult:
        root = require_dir(root)
        sessions = sorted((int(m.group(1)), p) for p in root.iterdir() if (m := _SESSION.match(p.name)))
        evaluations = [(s, f) for s, p in sessions for f in sorted((p / "dialog" / "EmoEvaluation").glob("*.txt"))]
        if not evaluations:
            raise FileNotFoundError(f"IEMOCAP root {root}: no Session*/dialog/EmoEvaluation/*.txt")
        out = ScanBuilder(self.name)
        for session, path in evaluations:
            dialog = path.stem
            video = path.parent.parent / "avi" / "DivX" / f"{dialog}.avi"
            if not video.is_file():
                out.problem(path, f"dialog video missing: {video.relative_to(root)}")
                continue
            for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
                match = _HEADER.match(line)
                if match:
                    self._add(root, out, session, dialog, video, match)
        return finish_scan(self, out, root)

    def _add(self, root: Path, out: ScanBuilder, session: int, dialog: str, video: Path, match: re.Match) -> None:
        start, end, utterance, category, vad = match.groups()
        where = f"{video.parent.parent.parent / 'EmoEvaluation' / dialog}.txt:{utterance}"
        name = _UTTERANCE.match(utterance)
        if not name or int(name.group(1)) != session or not utterance.startswith(dialog):
            out.problem(where, f"malformed utterance id {utterance!r} for dialog {dialog}")
            return
        if category == "exc" and self.merge_excited:
            category = "hap"
        if category not in CLASSES:
            return  # outside the 4-class protocol
        wav = root / f"Session{session}" / "sentences" / "wav" / dialog / f"{utterance}.wav"
        if not wav.is_file():
            out.problem(where, f"audio missing: {wav.relative_to(root)}")
            return
        left_actor, speaker = name.group(2), name.group(3)
        crop = "left" if speaker == left_actor else "right"
        try:
            values = tuple(float(v) for v in vad.split(","))
        except ValueError:
            values = ()
        out.add(
            RawClip(
                clip_id=utterance,
                dataset=self.name,
                subject=f"Ses{session:02d}{speaker}",
                video_path=video,
                audio_path=wav,
                label=CLASSES.index(category),
                label_name=category,
                test_fold=session,
                extra={"start": float(start), "end": float(end), "crop": crop, "dialog": dialog, "vad": values},
            )
        )
