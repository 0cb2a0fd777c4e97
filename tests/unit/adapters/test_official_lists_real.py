"""The adapters reproduce the official published split lists (HiCMAE, MAE-DFER), fold by fold, clip by clip.

The truth is ``tests/fixtures/official_lists/`` (built by its ``build.py`` from ``sunlicai/HiCMAE`` and
``sunlicai/MAE-DFER`` at the commits recorded in its ``manifest.json``). For each dataset a complete tree
of the release, in the layout the adapter reads, is generated (in ``/dev/shm`` where it can) for every clip of the lists
(empty placeholder media, no decoding), scanned with the adapter's built-in rules (never the
``official_lists`` option, which would copy the folds), and compared per fold: the set of test clip ids,
each clip's class index (or regression targets), and the sha256 of the clips outside the fold against the
official ``train.csv`` (and ``val.csv``).

What each comparison proves depends on where the adapter takes folds and labels from:

- CREMA-D, RAVDESS, Werewolf-XL: folds (actor / game rule) and labels (file name, CREMA-D and RAVDESS)
  come from the adapter's own rules; the exclusions (CREMA-D) and the speech-only choice (RAVDESS) too.
- MSP-IMPROV: folds from the session in the path/name (rule); the labels come from an evaluation file that
  has to be generated from the lists' labels (the release's labels are not public), so only the
  category letter -> index mapping and the parsing are checked there.
- MAFW, DFEW: the release's own split files (``set_K``) are what the adapter reads, so they are
  generated from the lists (unavoidable); the tests then check the clip-id mapping, the label name /
  1-based label -> index mapping, the fold numbering, and (MAFW) which clips an audio-visual scan drops.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from avf.data.adapters import get_adapter
from avf.data.adapters.listfiles import read_official_splits
from tests.support.official_lists import (
    FIXTURE_DIR,
    OfficialLists,
    compare_scan,
    digest,
    keys,
    label_key,
    load,
    manifest,
)


def _build_module() -> Any:
    """``tests/fixtures/official_lists/build.py`` as a module (where it looks for the sources' git dirs)."""
    spec = importlib.util.spec_from_file_location("official_lists_build", FIXTURE_DIR / "build.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# Label orders written down independently of avf (datasets.md §4; MAE-DFER/HiCMAE preprocess scripts).
MAFW_LABELS = (
    "anger",
    "disgust",
    "fear",
    "happiness",
    "neutral",
    "sadness",
    "surprise",
    "contempt",
    "anxiety",
    "helplessness",
    "disappointment",
)
MSP_LABELS = ("A", "H", "N", "S")
# RAVDESS song recordings (channel 02): no disgust/surprised, no Actor_18; neutral has no strong intensity.
RAVDESS_SONG_EMOTIONS = (1, 2, 3, 4, 5, 6)


def _create(files: Iterable[Path] = (), dirs: Iterable[Path] = ()) -> None:
    """Empty placeholder files and folders, fast (tens of thousands per tree)."""
    made: set[Path] = set()

    def mkdir(folder: Path) -> None:
        if folder not in made:
            folder.mkdir(parents=True, exist_ok=True)
            made.add(folder)

    for folder in dirs:
        mkdir(folder)
    for path in files:
        mkdir(path.parent)
        with open(path, "wb"):
            pass


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def _union_ids(*lists: OfficialLists) -> dict[str, tuple[int, object]]:
    """clip id -> (test fold, label) over several sources (their shared clips agree: build.py checks it)."""
    out: dict[str, tuple[int, object]] = {}
    for lst in lists:
        for row in lst.rows:
            out.setdefault(row.clip_id, (row.fold, lst.label(row)))
    return out


# --- release trees -------------------------------------------------------------------------------------


def tree_cremad(base: Path) -> Path:
    """The full CREMA-D release: every clip of either source (MAE-DFER keeps the 5 that HiCMAE drops)."""
    root = base / "CREMA-D"
    ids = _union_ids(load("hicmae-crema-d"), load("mae-dfer-crema-d"))
    files = [root / "VideoFlash" / f"{i}.flv" for i in ids] + [root / "AudioWAV" / f"{i}.wav" for i in ids]
    _create(files)
    return root


def tree_ravdess(base: Path) -> Path:
    """Speech and song zips unzipped: ``Actor_NN/{01,02}-*.mp4`` (full-AV, video-only) and ``03-*.wav``."""
    root = base / "RAVDESS"
    files = []
    for row in load("hicmae-ravdess").rows:
        actor, name = row.frame.split("/")[1:3]  # face_aligned/Actor_01/02-01-...
        files += [root / actor / f"0{m}-{name[3:]}{ext}" for m, ext in ((1, ".mp4"), (2, ".mp4"), (3, ".wav"))]
    for actor in range(1, 25):
        if actor == 18:
            continue
        for emotion in RAVDESS_SONG_EMOTIONS:
            for intensity in (1,) if emotion == 1 else (1, 2):
                for statement in (1, 2):
                    for rep in (1, 2):
                        key = f"02-{emotion:02d}-{intensity:02d}-{statement:02d}-{rep:02d}-{actor:02d}"
                        folder = root / f"Actor_{actor:02d}"
                        files += [folder / f"01-{key}.mp4", folder / f"02-{key}.mp4", folder / f"03-{key}.wav"]
    _create(files)
    return root


def _mafw_tree(base: Path, split_dir: str, audio_ids: Iterable[str] | None) -> Path:
    """MAFW release: ``data/clips``, ``single_label.txt`` and the single-set split files.

    The split files are the release's ``set_K`` lists, i.e. the MAE-DFER lists (its preprocess script converts
    them line by line); ``audio_ids``: the clips that get a ``data/audio_16k`` wav (None: no such folder).
    The placeholder clips are made once and linked into each tree (``data/frames`` is left out:
    the default ``video: clips`` does not read it).
    """
    root = base / "MAFW"
    release = load("mae-dfer-mafw")
    ids = sorted(_union_ids(release))
    clips = base.parent / "mafw-clips"  # shared by the MAFW trees (see the ``tree`` fixture)
    if not clips.is_dir():
        _create(clips / f"{i}.mp4" for i in ids)
    (root / "data").mkdir(parents=True)
    (root / "data" / "clips").symlink_to(clips, target_is_directory=True)
    if audio_ids is not None:
        _create(root / "data" / "audio_16k" / f"{i}.wav" for i in audio_ids)
    label = {r.clip_id: MAFW_LABELS[int(r.values[0])] for r in release.rows}
    _write(root / "single_label.txt", "".join(f"{i}.mp4  {label[i]}  字幕  A caption.\n" for i in ids))
    sets = root / split_dir / "single" / "no_caption"
    for fold in release.folds:
        test = [r.clip_id for r in release.test_rows(fold)]
        train = [r.clip_id for r in release.rows if r.fold != fold]
        _write(sets / f"set_{fold}" / "test.txt", "".join(f"{i}.mp4 {label[i]}\n" for i in test))
        _write(sets / f"set_{fold}" / "train.txt", "".join(f"{i}.mp4 {label[i]}\n" for i in train))
    return root


def tree_mafw_hicmae(base: Path) -> Path:
    """As HiCMAE had it: ``Train & Test Set`` and ``data/audio_16k`` (no wav for the clips without audio)."""
    return _mafw_tree(base, "Train & Test Set", [r.audio.rsplit("/", 1)[-1][:-4] for r in load("hicmae-mafw").rows])


def tree_mafw_release(base: Path) -> Path:
    """The release as downloaded: ``Train & Test Set``, no ``data/audio_16k`` extraction yet."""
    return _mafw_tree(base, "Train & Test Set", None)


def tree_mafw_mae_dfer(base: Path) -> Path:
    """As MAE-DFER had it (visual only): split folder ``split``, no audio extraction."""
    return _mafw_tree(base, "split", None)


def tree_msp_improv(base: Path) -> Path:
    """``Video/`` and ``Audio/`` session trees and an evaluation file (labels generated from the lists)."""
    root = base / "MSP-IMPROV"
    lists = load("hicmae-msp-improv")
    files, lines = [], []
    for row in lists.rows:
        session, sentence, condition = row.frame.split("/")[2:5]  # raw/openface/session1/S01A/P/<id>/<id>_aligned
        rel = Path(session, sentence, condition, row.clip_id)
        files += [(root / "Video" / rel).with_suffix(".avi"), (root / "Audio" / rel).with_suffix(".wav")]
        category = MSP_LABELS[int(row.values[0])]
        name = row.clip_id.replace("MSP-IMPROV-", "UTD-IMPROV-")
        lines.append(f"{name}.avi; {category}; A:3.000000; V:3.000000; D:3.000000; N:3.000000;")
        lines.append("Evaluator1; Neutral; A:3.000000; V:3.000000; D:3.000000; N:3.000000;\n")
    _create(files)
    _write(root / "Evalution.txt", "\n".join(lines) + "\n")
    return root


def tree_werewolf_xl(base: Path) -> Path:
    """HiCMAE's preprocessed layout (``openface/<id>/<id>_aligned``, ``audio_16k``) and a ``labels.csv``."""
    root = base / "Werewolf-XL"
    lists = load("hicmae-werewolf-xl")
    _create(files=[root / r.audio for r in lists.rows], dirs=[root / r.frame for r in lists.rows])
    table = "".join(f"{r.clip_id},{','.join(r.values)}\n" for r in lists.rows)
    _write(root / "labels.csv", "id,arousal,valence,dominance\n" + table)
    return root


def tree_dfew(base: Path) -> Path:
    """``Clip/original``, ``Clip/clip_224x224`` and ``EmoLabel_DataSplit`` set CSVs (integer ids, labels 1..7)."""
    root = base / "DFEW"
    lists = load("mae-dfer-dfew")
    ids = [r.clip_id for r in lists.rows]
    _create(
        files=[root / "Clip" / "original" / f"{i}.mp4" for i in ids],
        dirs=[root / "Clip" / "clip_224x224" / i for i in ids],
    )
    split = root / "EmoLabel_DataSplit"
    for fold in lists.folds:
        for name, rows in (
            ("test(single-labeled)", lists.test_rows(fold)),
            ("train(single-labeled)", [r for r in lists.rows if r.fold != fold]),
        ):
            body = "".join(f"{int(r.clip_id)},{int(r.values[0]) + 1}\n" for r in rows)
            _write(split / name / f"set_{fold}.csv", "video_name,label\n" + body)
    return root


TREES: dict[str, Callable[[Path], Path]] = {
    "cremad": tree_cremad,
    "ravdess": tree_ravdess,
    "mafw_hicmae": tree_mafw_hicmae,
    "mafw_release": tree_mafw_release,
    "mafw_mae_dfer": tree_mafw_mae_dfer,
    "msp_improv": tree_msp_improv,
    "werewolf_xl": tree_werewolf_xl,
    "dfew": tree_dfew,
}


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[str], Path]]:
    """Build each release tree once per module (``tree("cremad")`` etc.), and remove them all afterwards.

    The trees hold about 120,000 placeholder files and folders: on a RAM-backed ``/dev/shm`` they are
    made and removed about 15 times faster than on a disk-backed ``tmp_path`` (which is the fallback), and
    they are deleted here rather than left to pytest's temporary-folder rotation.
    """
    shm = Path("/dev/shm")
    try:
        base = Path(tempfile.mkdtemp(prefix="avf-official-lists-", dir=shm)) if os.access(shm, os.W_OK) else None
    except OSError:
        base = None
    base = base or tmp_path_factory.mktemp("official_lists")
    built: dict[str, Path] = {}

    def get(name: str) -> Path:
        if name not in built:
            folder = base / name
            folder.mkdir()
            built[name] = TREES[name](folder)
        return built[name]

    yield get
    shutil.rmtree(base, ignore_errors=True)


# --- the comparisons -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    lists: str  # fixture key "<source>-<dataset>"
    tree: str
    options: dict = field(default_factory=dict)  # adapter options (never official_lists)


CASES = [
    pytest.param(Case("hicmae-crema-d", "cremad"), id="hicmae-crema-d"),
    # MAE-DFER's visual-only lists keep the 4 broken clips and 1040_ITH_SAD_XX (7,442 = the whole release):
    # the adapter's documented option for that protocol is exclusions=none.
    pytest.param(Case("mae-dfer-crema-d", "cremad", {"exclusions": "none"}), id="mae-dfer-crema-d"),
    pytest.param(Case("hicmae-ravdess", "ravdess"), id="hicmae-ravdess"),
    pytest.param(Case("mae-dfer-ravdess", "ravdess"), id="mae-dfer-ravdess"),
    pytest.param(Case("hicmae-mafw", "mafw_hicmae"), id="hicmae-mafw-with-audio_16k"),
    # the release as downloaded (no audio_16k/): the 16 clips without an audio stream must still be dropped
    pytest.param(Case("hicmae-mafw", "mafw_release"), id="hicmae-mafw-without-audio_16k"),
    # MAE-DFER's lists are visual only and keep those 16 clips: require_audio=false is that protocol.
    pytest.param(Case("mae-dfer-mafw", "mafw_mae_dfer", {"require_audio": False}), id="mae-dfer-mafw"),
    pytest.param(Case("hicmae-msp-improv", "msp_improv"), id="hicmae-msp-improv"),
    pytest.param(Case("hicmae-werewolf-xl", "werewolf_xl"), id="hicmae-werewolf-xl"),
    pytest.param(Case("mae-dfer-dfew", "dfew"), id="mae-dfer-dfew"),
]


@pytest.mark.parametrize("case", CASES)
def test_adapter_scan_reproduces_the_official_folds(case: Case, tree: Callable[[str], Path]) -> None:
    lists = load(case.lists)
    result = get_adapter(lists.adapter, **case.options).scan(tree(case.tree))
    assert compare_scan(lists, result.clips) == []
    assert len(result.clips) == lists.entry["clips"]


def test_every_fixture_is_compared() -> None:
    covered = {p.values[0].lists for p in CASES}
    assert covered == set(keys())


def test_ravdess_pairs_the_listed_video_only_faces_with_the_audio_only_wavs(tree: Callable[[str], Path]) -> None:
    """HiCMAE's lines name ``face_aligned/Actor_NN/02-...`` and ``audio_16k/Actor_NN/03-....wav``."""
    lists = load("hicmae-ravdess")
    clips = {c.clip_id: c for c in get_adapter("ravdess", source="video+audio").scan(tree("ravdess")).clips}
    assert set(clips) == {r.clip_id for r in lists.rows}
    for row in lists.rows:
        clip = clips[row.clip_id]
        assert clip.audio_path is not None
        assert (clip.video_path.parent.name, clip.video_path.stem) == tuple(row.frame.split("/")[1:3])
        assert (clip.audio_path.parent.name, clip.audio_path.name) == tuple(row.audio.split("/")[1:3])


def test_known_facts_of_the_published_lists() -> None:
    """Sizes quoted in datasets.md §3/§4, re-derived from the fixture."""

    def sizes(key: str) -> list[int]:
        lists = load(key)
        return [lists.split_info(f, "test")["lines"] for f in lists.folds]  # type: ignore[index]

    assert sizes("hicmae-ravdess") == sizes("mae-dfer-ravdess") == [240] * 6
    assert sizes("hicmae-crema-d") == [1463, 1470, 1475, 1474, 1555]
    assert sizes("mae-dfer-crema-d") == [1463, 1470, 1476, 1476, 1557]
    assert sizes("hicmae-mafw") == [1836, 1833, 1827, 1829, 1831]
    assert sizes("mae-dfer-mafw") == [1839, 1837, 1833, 1832, 1831]
    assert sizes("hicmae-msp-improv") == [916, 1328, 1622, 1044, 1407, 1470]
    assert sizes("hicmae-werewolf-xl") == [3346, 2747, 3066, 3527, 1771]
    assert sizes("mae-dfer-dfew") == [2341, 2341, 2340, 2339, 2336]
    clips = {k: load(k).entry["clips"] for k in keys()}
    assert clips == {
        "hicmae-crema-d": 7437,
        "hicmae-mafw": 9156,
        "hicmae-msp-improv": 7787,
        "hicmae-ravdess": 1440,
        "hicmae-werewolf-xl": 14457,
        "mae-dfer-crema-d": 7442,
        "mae-dfer-dfew": 11697,
        "mae-dfer-mafw": 9172,
        "mae-dfer-ravdess": 1440,
    }
    data = manifest()
    assert data["cross_source"]["crema-d"]["only_mae_dfer"] == [
        "1040_ITH_SAD_XX",
        "1064_IEO_DIS_MD",
        "1064_TIE_SAD_XX",
        "1076_MTI_NEU_XX",
        "1076_MTI_SAD_XX",
    ]
    assert data["cross_source"]["mafw"]["only_mae_dfer"] == [
        "00903", "03414", "03440", "03721", "03724", "03726", "03727", "03728",
        "03730", "03732", "03810", "03855", "03927", "03928", "03931", "09529",
    ]  # fmt: skip
    for entry in data["datasets"].values():
        relations = entry["relations"]
        assert relations["test_folds_disjoint"] and relations["train_is_complement_of_test"], entry["fixture"]
        assert relations["labels_consistent"] and relations["no_duplicate_lines"], entry["fixture"]
    # val.csv exists (and equals test.csv) in every fold of HiCMAE's MSP-IMPROV and MAE-DFER's DFEW only
    with_val = {k for k, e in data["datasets"].items() if e["relations"]["val_equals_test"] is not None}
    assert with_val == {"hicmae-msp-improv", "mae-dfer-dfew"}
    assert all(e["relations"]["val_equals_test"] is not False for e in data["datasets"].values())
    for source in data["sources"].values():
        assert len(source["commit"]) == 40 and int(source["commit"], 16) >= 0


# --- our list reader on the real format ------------------------------------------------------------------


def _reader_root(base: Path, list_dir: str) -> Path:
    """The dataset's folder under ``saved/data`` when the reader must descend into ``audio_visual``/``single``."""
    parts = Path(list_dir).parts  # saved, data, <dataset>, ...
    rest = "/".join(parts[3:])
    return (
        base.joinpath(*parts[:3]) if rest in ("", "single", "audio_visual", "audio_visual/single") else base / list_dir
    )


@pytest.mark.parametrize("key", keys())
def test_read_official_splits_parses_the_published_lists(key: str, tmp_path: Path) -> None:
    """The fixture materialised as the source repo's tree (authors' absolute paths) reads back exactly."""
    lists = load(key)
    lists.materialise(tmp_path)
    adapter = get_adapter(lists.adapter)
    table = read_official_splits(_reader_root(tmp_path, lists.entry["list_dir"]), adapter)
    assert sorted(table.fold.unique()) == lists.folds
    for fold in lists.folds:
        for split in ("train", "test", "val"):
            info = lists.split_info(fold, split)
            part = table[(table.fold == fold) & (table.split == split)]
            if info is None:
                assert part.empty
                continue
            assert len(part) == info["lines"]
            assert digest(set(part.clip_id)) == info["ids_sha256"]
            values = part.targets if lists.task == "regression" else part.label.map(lambda v: [v])
            pairs = {f"{c} {label_key(v, lists.task)}" for c, v in zip(part.clip_id, values, strict=True)}
            assert digest(pairs) == info["labelled_sha256"]
    first = lists.rows[0]
    row = table[(table.fold == first.fold) & (table.split == "test")].iloc[0]
    assert row.frame_dir == lists.root_prefix + first.frame
    assert (row.audio_path or "") == (lists.root_prefix + first.audio if first.audio else "")


def test_fixture_is_small_and_records_its_sources() -> None:
    files = [p for p in FIXTURE_DIR.iterdir() if p.suffix in (".xz", ".json")]
    assert sum(p.stat().st_size for p in files) < 1_000_000
    assert {p.name for p in files} == {"manifest.json", *(load(k).entry["fixture"] for k in keys())}
    assert os.access(FIXTURE_DIR / "build.py", os.R_OK)


@pytest.mark.skipif(
    not all(p.is_dir() for p in _build_module().DEFAULT_GIT_DIRS.values()),
    reason="the source repositories' git mirrors are not on this machine",
)
def test_build_reproduces_the_committed_fixture(tmp_path: Path) -> None:
    """Where the mirrors exist, ``build.py`` regenerates the committed fixture byte for byte."""
    out = tmp_path / "fixture"
    done = subprocess.run(
        [sys.executable, str(FIXTURE_DIR / "build.py"), "--out", str(out)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    for path in out.iterdir():
        assert path.read_bytes() == (FIXTURE_DIR / path.name).read_bytes(), path.name
