"""Load the official split-list fixture (``tests/fixtures/official_lists/``, built by its ``build.py``).

The fixture holds, per (source, dataset), every fold's test list (clip id, the list's paths relative to
the dataset root, label or regression targets) and a manifest with per fold and split line counts, label
histograms and sha256 digests of the sorted clip ids (see ``build.py``'s docstring for the exact format).
:func:`load` returns one :class:`OfficialLists`; :func:`compare_scan` lists every way an adapter scan
disagrees with it, fold by fold.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import lzma
import math
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from avf.data.adapters import RawClip

FIXTURE_DIR = Path(__file__).resolve().parents[1] / "fixtures" / "official_lists"
MANIFEST = FIXTURE_DIR / "manifest.json"
FORMAT_VERSION = 1


def label_key(values: Iterable[str | float | int], task: str) -> str:
    """Normalised label text (as in ``build.py``): the class index, or ``repr(float)`` of each target."""
    values = list(values)
    if task == "regression":
        return " ".join(repr(float(v)) for v in values)
    return str(int(values[0]))


def digest(lines: Iterable[str]) -> str:
    """sha256 of the sorted strings joined by newlines (the manifest's ``*_sha256`` fields)."""
    return hashlib.sha256("\n".join(sorted(lines)).encode()).hexdigest()


@dataclass(frozen=True)
class Row:
    """One line of a fold's official test list."""

    fold: int
    clip_id: str
    frame: str  # relative to the dataset root
    audio: str  # relative to the dataset root; "" for visual-only lists
    values: tuple[str, ...]  # the list's label field(s), verbatim


@dataclass(frozen=True)
class OfficialLists:
    key: str  # "<source>-<dataset>"
    entry: dict  # the manifest entry
    rows: tuple[Row, ...]

    @property
    def source(self) -> str:
        return self.entry["source"]

    @property
    def adapter(self) -> str:
        return self.entry["adapter"]

    @property
    def task(self) -> str:
        return self.entry["task"]

    @property
    def root_prefix(self) -> str:
        return self.entry["root_prefix"]

    @property
    def folds(self) -> list[int]:
        return sorted(int(k) for k in self.entry["folds"])

    def split_info(self, fold: int, split: str) -> dict | None:
        return self.entry["folds"][str(fold)].get(split)

    def test_rows(self, fold: int) -> list[Row]:
        return [r for r in self.rows if r.fold == fold]

    def test_fold(self) -> dict[str, int]:
        return {r.clip_id: r.fold for r in self.rows}

    def label(self, row: Row) -> int | tuple[float, ...]:
        if self.task == "regression":
            return tuple(float(v) for v in row.values)
        return int(row.values[0])

    def labels(self) -> dict[str, int | tuple[float, ...]]:
        return {r.clip_id: self.label(r) for r in self.rows}

    def line(self, row: Row) -> str:
        """The list line exactly as the source repository has it (authors' absolute paths)."""
        paths = [self.root_prefix + row.frame]
        if row.audio:
            paths.append(self.root_prefix + row.audio)
        return " ".join([*paths, *row.values])

    def materialise(self, base: Path) -> Path:
        """Write the list tree as in the source repo (``<base>/<list_dir>/split0K/*.csv``); return that folder.

        ``test.csv`` comes from the fixture, ``train.csv`` as the other folds' test lines (the manifest's
        ``train_is_complement_of_test`` must hold), ``val.csv`` as a copy of ``test.csv`` where the source has
        one (``val_equals_test`` must hold).
        """
        relations = self.entry["relations"]
        if not relations["train_is_complement_of_test"]:
            raise ValueError(f"{self.key}: train lists are not the complement of the test lists; cannot rebuild")
        folder = base / self.entry["list_dir"]
        for fold in self.folds:
            split_dir = folder / f"split{fold:02d}"
            split_dir.mkdir(parents=True, exist_ok=True)
            test = "".join(f"{self.line(r)}\n" for r in self.rows if r.fold == fold)
            train = "".join(f"{self.line(r)}\n" for r in self.rows if r.fold != fold)
            (split_dir / "test.csv").write_text(test, encoding="utf-8")
            (split_dir / "train.csv").write_text(train, encoding="utf-8")
            if self.split_info(fold, "val") is not None:
                if not relations["val_equals_test"]:
                    raise ValueError(f"{self.key}: val lists differ from test lists; cannot rebuild")
                (split_dir / "val.csv").write_text(test, encoding="utf-8")
        return folder


@cache
def manifest() -> dict:
    data = json.loads(MANIFEST.read_text(encoding="utf-8"))
    if data.get("format") != FORMAT_VERSION:
        raise ValueError(f"{MANIFEST}: format {data.get('format')!r}, expected {FORMAT_VERSION}; rebuild it")
    return data


def keys() -> list[str]:
    return sorted(manifest()["datasets"])


@cache
def load(key: str) -> OfficialLists:
    """The lists of ``<source>-<dataset>`` (e.g. ``hicmae-crema-d``); checks the fixture file's sha256."""
    entry = manifest()["datasets"][key]
    data = (FIXTURE_DIR / entry["fixture"]).read_bytes()
    if hashlib.sha256(data).hexdigest() != entry["fixture_sha256"]:
        raise ValueError(f"{entry['fixture']} does not match manifest.json; rebuild with build.py")
    reader = csv.reader(io.StringIO(lzma.decompress(data).decode("utf-8")))
    header = next(reader)
    if header != ["fold", "clip_id", "frame", "audio", *entry["label_columns"]]:
        raise ValueError(f"{entry['fixture']}: unexpected header {header}")
    rows = tuple(Row(int(f[0]), f[1], f[2], f[3], tuple(f[4:])) for f in reader)
    return OfficialLists(key=key, entry=entry, rows=rows)


def _targets_close(a: tuple[float, ...], b: tuple[float, ...], tol: float) -> bool:
    return len(a) == len(b) and all(math.isclose(x, y, rel_tol=0, abs_tol=tol) for x, y in zip(a, b, strict=True))


def _show(ids: Iterable[str], limit: int = 40) -> str:
    ids = sorted(ids)
    more = f" ... (+{len(ids) - limit} more)" if len(ids) > limit else ""
    return f"{len(ids)} {ids[:limit]}{more}"


def compare_scan(lists: OfficialLists, clips: list[RawClip], tol: float = 1e-6) -> list[str]:
    """Every disagreement between an adapter scan and the official lists (empty: they agree).

    Per fold: the set of test clip ids; each test clip's label (class index) or targets (within ``tol``;
    the lists write multiples of 0.25); the sha256 of the sorted ids (and of ``<id> <label>``) of the clips
    outside the fold against the official ``train.csv``; the same for ``val.csv`` where the source has one.
    """
    problems: list[str] = []
    by_fold: dict[int | None, list[RawClip]] = {}
    for clip in clips:
        by_fold.setdefault(clip.test_fold, []).append(clip)
    unexpected = sorted(set(by_fold) - set(lists.folds), key=str)
    for fold in unexpected:
        problems.append(
            f"clips in fold {fold!r}, which the lists do not have: {_show(c.clip_id for c in by_fold[fold])}"
        )
    task = lists.task

    def got_key(clip: RawClip) -> str:
        return label_key(clip.targets if task == "regression" else [clip.label], task)

    for fold in lists.folds:
        want = {r.clip_id: lists.label(r) for r in lists.test_rows(fold)}
        got = {c.clip_id: c for c in by_fold.get(fold, [])}
        if missing := set(want) - set(got):
            problems.append(f"fold {fold}: official test clips the adapter does not put in this fold: {_show(missing)}")
        if extra := set(got) - set(want):
            problems.append(f"fold {fold}: adapter test clips not in the official test list: {_show(extra)}")
        wrong = []
        for clip_id in sorted(set(want) & set(got)):
            clip, expected = got[clip_id], want[clip_id]
            if task == "regression":
                ok = clip.targets is not None and _targets_close(tuple(clip.targets), expected, tol)  # type: ignore[arg-type]
                value: object = clip.targets
            else:
                ok = clip.label == expected
                value = clip.label
            if not ok:
                wrong.append(f"{clip_id}: expected {expected!r}, got {value!r}")
        if wrong:
            problems.append(f"fold {fold}: {len(wrong)} label mismatches: {wrong[:20]}")
        outside = [c for c in clips if c.test_fold is not None and c.test_fold != fold]
        for split, members in (("train", outside), ("val", list(got.values())), ("test", list(got.values()))):
            info = lists.split_info(fold, split)
            if info is None:
                continue
            ids = {c.clip_id for c in members}
            if digest(ids) != info["ids_sha256"]:
                problems.append(
                    f"fold {fold}: {split} ids differ from the official {split}.csv "
                    f"({len(ids)} clips vs {info['unique']} listed)"
                )
            elif (
                task != "regression"
                and digest({f"{c.clip_id} {got_key(c)}" for c in members}) != info["labelled_sha256"]
            ):
                problems.append(f"fold {fold}: {split} labels differ from the official {split}.csv")
    return problems
