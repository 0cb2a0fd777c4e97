"""MER challenge data: MER-MULTI (MER2023), MER24-T&V (MER2024 labelled) and the MER2024 unlabelled pool.

Names are ``sample_XXXXXXXX`` (8 digits), videos ``.mp4`` or ``.avi`` (looked up by stem, whatever the
extension). No speaker ids are published, so ``subject`` is the sample name. Audio: ``audio_16k/<name>.wav``
(``data/audio_16k`` in the AVF-MAE tree) when that folder exists, else the video's own track.

``mer2023`` (root ``mer2023-dataset/``): ``train/`` + ``train-label.csv`` (``name,discrete,valence``) is
the official train split; option ``test_set`` (``test1`` = MER-MULTI, default; ``test2`` MER-NOISE;
``test3`` MER-SEMI) with ``<test_set>/`` + ``<test_set>-label.csv`` is the test split. Classes in the
MERTools order (``zeroQiaoba/MERTools:MER2023/main-release.py``: neutral 0, angry 1, happy 2, sad 3,
worried 4, surprise 5; AVF-MAE and HiCMAE publish no MER2023 preprocessing, so their head's order is unknown);
valence goes to ``extra['valence']``. A validation split is not official: carve it from train downstream.
Option ``video``: ``raw`` (default) or ``face_aligned`` (``face_aligned/<name>/`` frame folders).

``mer2024`` (MER24-T&V, 5-fold CV on the 5,030 labelled samples) reads either the AVF-MAE tree
(``MER2024-labeled/``: ``data/face_aligned/<name>/`` frames, ``data/audio_16k/``,
``labels/set_{1..5}/{train,test}.txt`` with ``sample_00000000.mp4 happy`` lines, which then define the
folds) or the release (``mer2024-dataset/``: ``video-labeled/`` + ``label-disdim.csv``), whose folds the
authors never published: they are generated here, stratified by class and seeded (option ``seed``,
default 0; identical on every machine). Class order: AVF-MAE's (``XuecWu/AVF-MAE:preprocess/mer24_av_ft.py``),
the order of its released MER2024 head: worried 0, happy 1, neutral 2, angry 3, surprise 4, sad 5. The
two datasets share six classes in different orders: a head of one is refused for the other
(:mod:`avf.predict.heads`).

``mer2024_unlabeled`` (task none): ``video-unlabeled-with-test2noise/*`` of the release, for pre-training.
"""

from __future__ import annotations

import contextlib
import re
from pathlib import Path
from typing import Any

from avf.data.adapters.base import Adapter, RawClip, ScanResult, register_adapter
from avf.data.adapters.common import (
    VIDEO_EXTS,
    ScanBuilder,
    find_with_ext,
    finish_scan,
    opt_choice,
    opt_int,
    require_dir,
    stratified_folds,
)
from avf.data.adapters.tables import read_records

MERTOOLS_ORDER = ("neutral", "angry", "happy", "sad", "worried", "surprise")
AVF_MAE_ORDER = ("worried", "happy", "neutral", "angry", "surprise", "sad")
_NAME = re.compile(r"^sample_\d{8}$")
_SET = re.compile(r"^set_(\d+)$")


def _audio(audio_dir: Path, name: str, out: ScanBuilder, video: Path) -> tuple[bool, Path | None]:
    """(usable, audio path): a wav from ``audio_dir`` when that tree exists, else the video's own track."""
    if not audio_dir.is_dir():
        return True, None
    wav = audio_dir / f"{name}.wav"
    if wav.is_file():
        return True, wav
    out.problem(video, f"audio missing: no {audio_dir.name}/{name}.wav")
    return False, None


def _label_table(path: Path, out: ScanBuilder) -> dict[str, dict[str, str]]:
    try:
        rows = read_records(path, ("name", "discrete"))
    except ValueError as exc:
        out.problem(path, str(exc))
        return {}
    return {row["name"].strip(): row for row in rows if row.get("name", "").strip()}


@register_adapter("mer2023")
class Mer2023Adapter(Adapter):
    task = "classification"
    classes = MERTOOLS_ORDER
    num_folds = 0
    metrics = ("uar", "wa_f1")

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.test_set = opt_choice(options, "test_set", "test1", ("test1", "test2", "test3"))
        self.video = opt_choice(options, "video", "raw", ("raw", "face_aligned"))

    def scan(self, root: Path) -> ScanResult:
        root = require_dir(root)
        train_labels = root / "train-label.csv"
        if not train_labels.is_file():
            raise FileNotFoundError(f"MER2023 root {root} has no train-label.csv")
        out = ScanBuilder(self.name)
        for split, folder, table in (
            ("train", "train", train_labels),
            ("test", self.test_set, root / f"{self.test_set}-label.csv"),
        ):
            if not table.is_file():
                out.problem(table, f"label file missing: no {split} clips")
                continue
            for name, row in sorted(_label_table(table, out).items()):
                self._add(root, out, name, row, split, root / folder)
        return finish_scan(self, out, root)

    def _add(self, root: Path, out: ScanBuilder, name: str, row: dict[str, str], split: str, folder: Path) -> None:
        label = row["discrete"].strip().lower()
        where = folder / name
        if not _NAME.match(name):
            out.problem(where, "malformed MER name (expected sample_XXXXXXXX)")
            return
        if label not in self.classes:
            out.problem(where, f"unknown label {row['discrete']!r}")
            return
        extra: dict[str, Any] = {}
        if self.video == "raw":
            video = find_with_ext(folder, name, VIDEO_EXTS)
            if video is None:
                out.problem(where, f"video missing: no {folder.name}/{name}.mp4 or .avi")
                return
        else:
            video = root / "face_aligned" / name
            if not video.is_dir():
                out.problem(video, "face_aligned frame folder missing")
                return
            extra["frames"] = True
        ok, audio = _audio(root / "audio_16k", name, out, video)
        if not ok:
            return
        with contextlib.suppress(ValueError):
            extra["valence"] = float(row.get("valence", ""))
        out.add(
            RawClip(
                clip_id=name,
                dataset=self.name,
                subject=name,
                video_path=video,
                audio_path=audio,
                label=self.classes.index(label),
                label_name=label,
                official_split=split,
                extra=extra,
            )
        )


@register_adapter("mer2024")
class Mer2024Adapter(Adapter):
    task = "classification"
    classes = AVF_MAE_ORDER
    num_folds = 5
    metrics = ("war", "wa_f1")

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.seed = opt_int(options, "seed", 0)

    def scan(self, root: Path) -> ScanResult:
        root = require_dir(root)
        out = ScanBuilder(self.name)
        if (root / "labels").is_dir():
            entries = self._from_fold_lists(root, out)
            video_dir, audio_dir, frames = root / "data" / "face_aligned", root / "data" / "audio_16k", True
        elif (root / "label-disdim.csv").is_file():
            entries = self._from_release(root, out)
            video_dir, audio_dir, frames = root / "video-labeled", root / "audio_16k", False
        else:
            raise FileNotFoundError(f"MER2024 root {root}: neither labels/set_K/ (AVF-MAE) nor label-disdim.csv")
        for name, (label, fold) in sorted(entries.items()):
            if frames:
                video: Path | None = video_dir / name
                if not video.is_dir():
                    out.problem(video, "face_aligned frame folder missing")
                    continue
            else:
                video = find_with_ext(video_dir, name, VIDEO_EXTS)
                if video is None:
                    out.problem(video_dir / name, "video missing in video-labeled/")
                    continue
            ok, audio = _audio(audio_dir, name, out, video)
            if not ok:
                continue
            out.add(
                RawClip(
                    clip_id=name,
                    dataset=self.name,
                    subject=name,
                    video_path=video,
                    audio_path=audio,
                    label=self.classes.index(label),
                    label_name=label,
                    test_fold=fold,
                    extra={"frames": True} if frames else {},
                )
            )
        return finish_scan(self, out, root)

    def _from_fold_lists(self, root: Path, out: ScanBuilder) -> dict[str, tuple[str, int]]:
        sets = sorted((int(m.group(1)), p) for p in (root / "labels").iterdir() if (m := _SET.match(p.name)))
        entries: dict[str, tuple[str, int]] = {}
        for fold, folder in sets:
            path = folder / "test.txt"
            if not path.is_file():
                out.problem(path, "fold test list missing")
                continue
            for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
                fields = line.split()
                if not fields:
                    continue
                name = Path(fields[0]).stem
                label = fields[1].lower() if len(fields) > 1 else ""
                if not _NAME.match(name) or label not in self.classes:
                    out.problem(f"{path}:{number}", f"malformed line or unknown label: {line!r}")
                    continue
                if name in entries:
                    out.problem(f"{path}:{number}", f"{name} is also a test clip of set_{entries[name][1]}")
                    continue
                entries[name] = (label, fold)
        if not entries:
            raise FileNotFoundError(f"MER2024 root {root}: no usable labels/set_K/test.txt")
        return entries

    def _from_release(self, root: Path, out: ScanBuilder) -> dict[str, tuple[str, int]]:
        table = root / "label-disdim.csv"
        labels: dict[str, str] = {}
        for name, row in _label_table(table, out).items():
            label = row["discrete"].strip().lower()
            if not _NAME.match(name) or label not in self.classes:
                out.problem(table, f"bad row {name!r}: unknown label {row['discrete']!r} or malformed name")
                continue
            labels[name] = label
        folds = stratified_folds([(n, self.classes.index(c)) for n, c in labels.items()], 5, self.seed)
        return {name: (label, folds[name]) for name, label in labels.items()}


@register_adapter("mer2024_unlabeled")
class Mer2024UnlabeledAdapter(Adapter):
    task = "none"
    metrics = ()

    def scan(self, root: Path) -> ScanResult:
        root = require_dir(root)
        folder = root / "video-unlabeled-with-test2noise"
        if not folder.is_dir():
            raise FileNotFoundError(f"MER2024 root {root} has no video-unlabeled-with-test2noise/ folder")
        out = ScanBuilder(self.name)
        for path in sorted(folder.iterdir()):
            if path.suffix.lower() not in VIDEO_EXTS:
                continue
            if not _NAME.match(path.stem):
                out.problem(path, "malformed MER name (expected sample_XXXXXXXX)")
                continue
            out.add(RawClip(clip_id=path.stem, dataset=self.name, subject=path.stem, video_path=path))
        return finish_scan(self, out, root)
