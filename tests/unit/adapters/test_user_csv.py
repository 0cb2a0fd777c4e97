"""The ``csv`` adapter: a user's own clips listed in a CSV file."""

from __future__ import annotations

from pathlib import Path

import pytest

from avf.config.data import DatasetSpec
from avf.data.adapters import Problem, get_adapter
from avf.data.adapters.user_csv import CsvAdapter
from avf.data.stages.scan import scan_dataset
from tests.support.fixtures_datasets import frames, make_hicmae_lists, make_user_csv, touch, write_text
from tests.unit.adapters.helpers import assert_clip_ids_safe, by_id


def _tree(tmp_path: Path, csv_text: str, media: tuple[str, ...] = (), name: str = "clips.csv") -> Path:
    root = tmp_path / "own"
    for rel in media:
        touch(root / rel)
    write_text(root / name, csv_text)
    return root


def _problem(problems: list[Problem], line: int, name: str = "clips.csv") -> str:
    """The reason of the one problem that names ``<name>:<line>``."""
    found = [p.reason for p in problems if p.path.endswith(f"{name}:{line}")]
    assert len(found) == 1, (line, problems)
    return found[0]


def test_classification_with_default_classes_ids_frames_and_audio(tmp_path: Path) -> None:
    root = make_user_csv(tmp_path)
    adapter = get_adapter("csv", file="clips.csv", folds=3)
    assert adapter.task == "classification" and adapter.classes == ()
    result = adapter.scan(root)
    clips = by_id(result)
    assert adapter.classes == ("happy", "sad") and adapter.num_classes == 2 and adapter.num_folds == 3
    assert sorted(clips) == ["s1-a", "s1-b", "s2-a", "s2-b", "s3-a", "s3-take_2"]
    a = clips["s1-a"]
    assert (a.label, a.label_name, a.subject, a.video_path) == (0, "happy", "s1", root / "s1" / "a.mp4")
    assert a.audio_path is None and a.official_split is None and a.dataset == "csv"
    frame_clip = clips["s3-take_2"]
    assert frame_clip.extra["frames"] is True and "no_audio" not in frame_clip.extra
    assert frame_clip.video_path == root / "s3" / "take 2" and frame_clip.audio_path == root / "s3" / "take2.wav"
    assert (frame_clip.label, frame_clip.label_name) == (1, "sad")
    assert "frames" not in a.extra and a.extra["csv_row"].endswith("clips.csv:2")
    # three subjects in three folds: one subject per fold, all of its clips together
    folds = {c.subject: {x.test_fold for x in result.clips if x.subject == c.subject} for c in result.clips}
    assert sorted(next(iter(f)) for f in folds.values()) == [1, 2, 3] and all(len(f) == 1 for f in folds.values())
    assert len(result.problems) == 1
    assert "video not found" in _problem(result.problems, 8) and "missing.mp4" in _problem(result.problems, 8)
    assert_clip_ids_safe(result)


def test_class_order_is_sorted_unless_the_classes_option_fixes_it(tmp_path: Path) -> None:
    text = "path,label,subject\na.mp4,neutral,p1\nb.mp4,Angry,p1\nc.mp4,happy,p2\ngone.mp4,calm,p2\n"
    root = _tree(tmp_path, text, ("a.mp4", "b.mp4", "c.mp4"))
    derived = get_adapter("csv", file="clips.csv", folds=2)
    derived.scan(root)
    # code-point order; the label of a row skipped for its missing file still counts
    assert derived.classes == ("Angry", "calm", "happy", "neutral")
    fixed = get_adapter("csv", file="clips.csv", folds=2, classes="neutral, happy,Angry")
    result = fixed.scan(root)
    assert fixed.classes == ("neutral", "happy", "Angry")
    assert {k: c.label for k, c in by_id(result).items()} == {"a": 0, "b": 2, "c": 1}
    assert "video not found" in _problem(result.problems, 5)
    # a label outside the classes option is a problem of its row
    fixed = get_adapter("csv", file="clips.csv", folds=2, classes="neutral,happy,calm")
    result = fixed.scan(root)
    assert "unknown label 'Angry'" in _problem(result.problems, 3) and "b" not in by_id(result)
    # instances do not share their label space; the class defaults are untouched
    assert derived.classes != fixed.classes and CsvAdapter.classes == () and CsvAdapter.task == "classification"


def test_regression_targets_and_split_column(tmp_path: Path) -> None:
    root = make_user_csv(tmp_path)
    adapter = get_adapter("csv", file="va.csv", targets="arousal, valence")
    assert adapter.task == "regression" and adapter.target_names == ("arousal", "valence")
    assert adapter.classes == () and adapter.num_classes == 0
    result = adapter.scan(root)
    clips = by_id(result)
    assert {k: (c.targets, c.official_split, c.test_fold) for k, c in clips.items()} == {
        "s1-a": ((0.5, -0.25), "train", None),
        "s2-a": ((0.1, 0.2), "val", None),
        "s3-a": ((-0.5, 0.75), "test", None),
        "s3-take_2": ((0.0, 0.0), "test", None),
    }
    assert all(c.label is None and c.label_name is None for c in result.clips)
    assert clips["s3-take_2"].extra == {"csv_row": f"{root / 'va.csv'}:5", "frames": True, "no_audio": True}
    assert adapter.num_folds == 0
    assert "target arousal='high' is not a finite number" in _problem(result.problems, 6, "va.csv")


def test_fold_column_is_used_as_given(tmp_path: Path) -> None:
    text = (
        "path,label,subject,fold\n"
        "a.mp4,x,p1,1\n"
        "b.mp4,y,p1,3\n"  # not subject-independent: the user's choice
        "c.mp4,y,p2,2.0\n"
        "d.mp4,x,p2,0\n"
        "e.mp4,x,p3,two\n"
        "f.mp4,x,p3,\n"
    )
    root = _tree(tmp_path, text, tuple(f"{n}.mp4" for n in "abcdef"))
    adapter = get_adapter("csv", file="clips.csv")
    result = adapter.scan(root)
    assert {k: c.test_fold for k, c in by_id(result).items()} == {"a": 1, "b": 3, "c": 2}
    assert adapter.num_folds == 3
    assert "fold '0' is not an integer >= 1" in _problem(result.problems, 5)
    assert "fold 'two'" in _problem(result.problems, 6) and "fold ''" in _problem(result.problems, 7)


def test_split_column_values(tmp_path: Path) -> None:
    text = "path,label,subject,split\na.mp4,x,p1,Train\nb.mp4,y,p2,TEST\nc.mp4,y,p3,dev\nd.mp4,x,p3,\n"
    root = _tree(tmp_path, text, ("a.mp4", "b.mp4", "c.mp4", "d.mp4"))
    result = get_adapter("csv", file="clips.csv").scan(root)
    assert {k: c.official_split for k, c in by_id(result).items()} == {"a": "train", "b": "test"}
    assert "split 'dev' is not one of ['train', 'val', 'test']" in _problem(result.problems, 4)
    assert "split ''" in _problem(result.problems, 5)


def _many_subjects(tmp_path: Path, subjects: int = 12, per_subject: int = 3) -> Path:
    rows = ["path,label,subject"]
    media = []
    for s in range(subjects):
        for k in range(per_subject):
            rel = f"p{s:02d}/c{k}.mp4"
            media.append(rel)
            # subjects 0-5 mostly "calm", 6-11 mostly "loud"
            label = ("calm" if s < 6 else "loud") if k < 2 else ("loud" if s < 6 else "calm")
            rows.append(f"{rel},{label},p{s:02d}")
    return _tree(tmp_path, "\n".join(rows) + "\n", tuple(media))


def test_automatic_folds_are_subject_independent_stratified_and_deterministic(tmp_path: Path) -> None:
    root = _many_subjects(tmp_path)
    result = get_adapter("csv", file="clips.csv", folds=3).scan(root)
    fold_of: dict[str, set[int]] = {}
    for c in result.clips:
        fold_of.setdefault(c.subject, set()).add(c.test_fold or 0)
    assert all(len(f) == 1 for f in fold_of.values()), "every subject's clips are in exactly one fold"
    per_fold = {k: sorted(s for s, f in fold_of.items() if f == {k}) for k in (1, 2, 3)}
    assert [len(v) for v in per_fold.values()] == [4, 4, 4]
    for subjects in per_fold.values():  # stratified: both majority labels in every fold
        assert {s < "p06" for s in subjects} == {True, False}
    again = get_adapter("csv", file="clips.csv", folds=3).scan(root)
    assert [(c.clip_id, c.test_fold) for c in again.clips] == [(c.clip_id, c.test_fold) for c in result.clips]
    other = get_adapter("csv", file="clips.csv", folds=3, seed=7).scan(root)
    assert [c.test_fold for c in other.clips] != [c.test_fold for c in result.clips]
    regression = root / "r.csv"
    regression.write_text("path,subject,v\n" + "".join(f"p{s:02d}/c0.mp4,p{s:02d},{s}\n" for s in range(12)))
    reg = get_adapter("csv", file="r.csv", targets="v", folds=4).scan(root)
    assert sorted(c.test_fold or 0 for c in reg.clips) == [1, 1, 1, 2, 2, 2, 3, 3, 3, 4, 4, 4]


def test_fewer_subjects_than_folds_is_an_error(tmp_path: Path) -> None:
    root = _many_subjects(tmp_path, subjects=3)
    with pytest.raises(ValueError, match=r"clips\.csv: 3 subject\(s\) with usable clips cannot fill folds=5"):
        get_adapter("csv", file="clips.csv").scan(root)
    with pytest.raises(ValueError, match="folds=1 must be >= 2"):
        get_adapter("csv", file="clips.csv", folds=1)


def test_a_csv_without_one_usable_row_reports_every_row(tmp_path: Path) -> None:
    root = _tree(tmp_path, "path,label,subject\ngone.mp4,happy,p1\nlost.mp4,sad,p2\n")
    result = get_adapter("csv", file="clips.csv").scan(root)
    assert result.clips == []
    assert "video not found" in _problem(result.problems, 2) and "video not found" in _problem(result.problems, 3)


def test_bad_rows_are_problems_naming_the_row(tmp_path: Path) -> None:
    text = (
        "path,label,subject,audio_path,id\n"
        "a.mp4,x,p1,,first\n"
        "b.mp4,x,p1,,first\n"  # 3: duplicate id
        "c.mp4,x,p2,nope.wav,\n"  # 4: audio missing
        "d.mp4,x,,,\n"  # 5: empty subject
        "e.mp4,,p2,,\n"  # 6: empty label
        "f.mp4,y,p3,,bad id\n"  # 7: unsafe id
        ",y,p3,,\n"  # 8: empty path
        "g.mp4,y,p3,,\n"
    )
    root = _tree(tmp_path, text, tuple(f"{n}.mp4" for n in "abcdefg"))
    result = get_adapter("csv", file="clips.csv", folds=2).scan(root)
    assert sorted(by_id(result)) == ["first", "g"]
    assert f"duplicate clip id 'first' (first at {root / 'clips.csv'}:2)" in _problem(result.problems, 3)
    assert "audio file not found" in _problem(result.problems, 4) and "nope.wav" in _problem(result.problems, 4)
    assert "empty subject" in _problem(result.problems, 5)
    assert "empty label" in _problem(result.problems, 6)
    assert "unsafe clip id 'bad id'" in _problem(result.problems, 7)
    assert "empty path" in _problem(result.problems, 8)
    assert all(p.path.startswith(str(root / "clips.csv")) and p.reason.endswith("row skipped") for p in result.problems)
    assert len(result.problems) == 6


@pytest.mark.parametrize(
    ("text", "options", "match"),
    [
        ("", {}, r"clips\.csv: the CSV has no data rows \(columns found: \[\]\)"),
        ("path,label,subject\n\n", {}, r"clips\.csv: the CSV has no data rows \(columns found: \['path', 'label'"),
        ("path,label\na.mp4,x\n", {}, r"clips\.csv: missing column\(s\) \['subject'\]; columns found: \['path', 'la"),
        ("Path,Subject\na.mp4,p\n", {}, r"clips\.csv: neither a label column .* columns found: \['path', 'subject'\]"),
        ("path,subject,a\na.mp4,p,1\n", {"targets": "a,v"}, r"missing column\(s\) \['v'\]"),
        ("path,label,subject,fold,split\na.mp4,x,p,1,test\n", {}, "both fold and split columns have values"),
    ],
)
def test_file_level_errors_name_the_file_and_the_columns(
    tmp_path: Path, text: str, options: dict[str, str], match: str
) -> None:
    root = _tree(tmp_path, text, ("a.mp4",))
    with pytest.raises(ValueError, match=match):
        get_adapter("csv", file="clips.csv", **options).scan(root)


def test_rows_are_named_by_their_first_line_and_unreadable_files_by_name(tmp_path: Path) -> None:
    text = 'path,label,subject,fold\n"a\nb.mp4",x,p1,1\n\nc.mp4,y,p2,1\nd.mp4,z,p3,1\n'  # a 2-line path, a blank line
    root = _tree(tmp_path, text, ("c.mp4", "d.mp4"))
    result = get_adapter("csv", file="clips.csv", classes="x,y").scan(root)
    assert "video not found" in _problem(result.problems, 2) and "unknown label 'z'" in _problem(result.problems, 6)
    (root / "latin1.csv").write_bytes("path,label,subject\ncaf\xe9.mp4,x,p1\n".encode("latin-1"))
    with pytest.raises(ValueError, match=r"latin1\.csv: not UTF-8 text"):
        get_adapter("csv", file="latin1.csv").scan(root)


def test_option_errors_and_a_missing_csv(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"option file .* is required"):
        get_adapter("csv")
    with pytest.raises(ValueError, match="not both"):
        get_adapter("csv", file="x.csv", classes="a,b", targets="v")
    with pytest.raises(ValueError, match="distinct"):
        get_adapter("csv", file="x.csv", classes="a,a")
    with pytest.raises(FileNotFoundError, match=r"CSV file not found: .*nothere\.csv"):
        get_adapter("csv", file="nothere.csv").scan(tmp_path)


def test_absolute_paths_tsv_bom_header_case_fps_and_empty_fold_column(tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere"
    touch(outside / "v 1.mkv")
    frames(outside / "frames.d", ["1.png", "2.png"])
    root = tmp_path / "own"
    touch(root / "sub" / "in.mp4")
    text = (
        "PATH\tLabel\tSubject\tFPS\tSplit\tFold\n"
        f"{outside / 'v 1.mkv'}\tx\tp1\t\ttrain\t\n"
        f"{outside / 'frames.d'}\ty\tp2\t30\ttest\t\n"
        f"{root / 'sub' / 'in.mp4'}\ty\tp3\t\tval\t\n"
        f"{outside / 'frames.d'}\ty\tp2\tfast\ttest\t\n"
    )
    csv_file = tmp_path / "lists" / "mine.tsv"
    csv_file.parent.mkdir()
    csv_file.write_bytes(b"\xef\xbb\xbf" + text.encode())
    result = get_adapter("csv", file=str(csv_file)).scan(root)
    clips = by_id(result)
    inside = clips["sub-in"]
    (frame_clip,) = [c for k, c in clips.items() if k.endswith("-elsewhere-frames_d")]  # outside the root: full path
    assert inside.official_split == "val" and inside.video_path == root / "sub" / "in.mp4"
    assert frame_clip.extra["fps"] == 30.0 and frame_clip.extra["frames"] is True
    assert any(k.endswith("elsewhere-v_1") for k in clips)
    assert "fps 'fast' is not a positive number" in _problem(result.problems, 5, "mine.tsv")


def test_official_lists_replace_the_folds(tmp_path: Path) -> None:
    text = "path,label,subject,id\na.mp4,x,p1,c1\nb.mp4,y,p2,c2\nc.mp4,x,p3,c3\n"
    root = _tree(tmp_path, text, ("a.mp4", "b.mp4", "c.mp4"))
    lists = make_hicmae_lists(
        tmp_path / "lists",
        {1: {"train": ["/x/c2 /x/c2.wav 1"], "test": ["/x/c1 /x/c1.wav 0"]}, 2: {"test": ["/x/c2 /x/c2.wav 1"]}},
    )
    adapter = get_adapter("csv", file="clips.csv", official_lists=str(lists), folds=5)  # > 3 subjects: no matter
    result = adapter.scan(root)
    assert {k: c.test_fold for k, c in by_id(result).items()} == {"c1": 1, "c2": 2}
    assert adapter.num_folds == 2
    assert any("not in any official test list" in p.reason for p in result.problems)


def test_the_label_space_reaches_the_manifest_stage(tmp_path: Path) -> None:
    root = make_user_csv(tmp_path)
    spec = DatasetSpec(name="mine", adapter="csv", raw_dir=str(root), options={"file": "clips.csv", "folds": 3})
    scan = scan_dataset(spec)
    assert (scan.labels.task, scan.labels.classes, scan.labels.targets) == ("classification", ("happy", "sad"), ())
    assert len(scan.clips) == 6 and len(scan.problems) == 1 and not scan.rejected
    spec = DatasetSpec(
        name="va", adapter="csv", raw_dir=str(root), options={"file": "va.csv", "targets": "arousal,valence"}
    )
    labels = scan_dataset(spec).labels
    assert (labels.task, labels.targets, labels.num_outputs) == ("regression", ("arousal", "valence"), 2)
