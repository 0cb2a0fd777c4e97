"""Manifest: built from adapter clips + stage sidecars, Parquet round trip, schema check."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from avf.data.adapters.base import RawClip
from avf.data.manifest import COLUMNS, ManifestError, read_manifest, validate, write_manifest
from avf.data.stages.manifest import build_manifest


def _face(clip_id: str, status: str = "ok") -> dict[str, Any]:
    return {
        "status": status,
        "face_file": f"{clip_id}.mkv" if status == "ok" else None,
        "duration_s": 2.0,
        "fps": 25.0,
        "frames_kept": 50 if status == "ok" else 0,
        "coverage": 0.9 if status == "ok" else 0.1,
    }


def _audio(clip_id: str, status: str = "ok", audio_status: str = "ok") -> dict[str, Any]:
    return {
        "status": status,
        "audio_file": f"{clip_id}.wav" if status == "ok" else None,
        "audio_status": audio_status,
        "has_audio": audio_status != "missing",
    }


def _clip(clip_id: str, **kw: Any) -> RawClip:
    return RawClip(
        clip_id=clip_id, dataset="x", subject=kw.pop("subject", "s1"), video_path=Path(f"/raw/{clip_id}.mp4"), **kw
    )


def _manifest() -> pd.DataFrame:
    clips = [
        _clip("a", label=2, label_name="happy", test_fold=1),
        _clip("b", label=0, label_name="neutral", test_fold=2, subject="s2"),
        _clip("c", targets=(0.5, -0.25, 1.0), official_split="test"),
        _clip("d"),
        _clip("e"),
        _clip("f"),
    ]
    faces = {c: _face(c) for c in "abcf"} | {"d": _face("d", "face in too few frames: coverage 0.10 < 0.5")}
    audios = {"a": _audio("a"), "b": _audio("b", audio_status="missing"), "c": _audio("c")}
    audios["f"] = _audio("f", "no audio track", "missing")
    return build_manifest("demo", clips, faces, audios, Path("faces"), Path("audio"), {"e": "duplicate clip id: 'e'"})


def test_rows_combine_labels_folds_and_stage_outcomes() -> None:
    df = _manifest()
    assert list(df.columns) == list(COLUMNS)
    row = df.set_index("clip_id")
    assert row.loc["a", "status"] == "ok" and row.loc["a", "face_path"] == str(Path("faces/a.mkv"))
    assert row.loc["a", "audio_path"] == str(Path("audio/a.wav")) and row.loc["a", "label"] == 2
    assert (
        row.loc["b", "status"] == "ok" and row.loc["b", "audio_status"] == "missing" and not row.loc["b", "has_audio"]
    )
    assert row.loc["c", "label"] == -1 and list(row.loc["c", "targets"]) == [0.5, -0.25, 1.0]
    assert row.loc["c", "official_split"] == "test" and row.loc["c", "test_fold"] == -1
    assert row.loc["d", "status"] == "face in too few frames: coverage 0.10 < 0.5" and pd.isna(
        row.loc["d", "face_path"]
    )
    assert row.loc["e", "status"] == "duplicate clip id: 'e'"
    assert row.loc["f", "status"] == "no audio track"
    assert df["dataset"].eq("demo").all() and df["num_frames"].dtype == "int64"


def test_parquet_roundtrip_keeps_values_and_passes_the_check(tmp_path: Path) -> None:
    df = _manifest()
    write_manifest(df, tmp_path / "m" / "demo.parquet")
    back = read_manifest(tmp_path / "m" / "demo.parquet")
    assert back["clip_id"].tolist() == df["clip_id"].tolist()
    assert back.set_index("clip_id").loc["c", "targets"] == [0.5, -0.25, 1.0]
    assert back.set_index("clip_id").loc["a", "targets"] is None
    assert [p.name for p in (tmp_path / "m").iterdir()] == ["demo.parquet"]  # no temp file left


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.drop(columns=["face_coverage"]), r"missing columns \['face_coverage'\]"),
        (lambda d: d.assign(extra=1), r"unknown columns \['extra'\]"),
        (lambda d: d.assign(label=d["label"].astype(float)), "label: expected an integer column"),
        (lambda d: d.assign(clip_id=["a", "a", "c", "d", "e", "f"]), r"duplicated ids \['a'\]"),
        (lambda d: d.assign(clip_id=["a.b", "b", "c", "d", "e", "f"]), "unsafe ids"),
        (lambda d: d.assign(subject=[None, "s", "s", "s", "s", "s"]), "subject: 1 null value"),
        (lambda d: d.assign(official_split=["dev", None, None, None, None, None]), "official_split: values outside"),
        (lambda d: d.assign(test_fold=0), "folds are 1-based"),
        (lambda d: d.assign(face_path=None), "'ok' row.* without face_path/audio_path"),
        (lambda d: d.assign(targets=[[1.0], [1.0, 2.0], None, None, None, None]), "different lengths"),
        (lambda d: d.assign(audio_status="loud"), "audio_status: values outside"),
    ],
)
def test_schema_violations_are_reported(mutate: Any, message: str) -> None:
    with pytest.raises(ManifestError, match=message):
        validate(mutate(_manifest()))


def test_read_rejects_files_that_are_not_manifests(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="manifest not found"):
        read_manifest(tmp_path / "none.parquet")
    (tmp_path / "bad.parquet").write_text("not parquet")
    with pytest.raises(ManifestError, match=r"bad\.parquet: not a readable Parquet file"):
        read_manifest(tmp_path / "bad.parquet")
    pd.DataFrame({"clip_id": ["a"]}).to_parquet(tmp_path / "other.parquet")
    with pytest.raises(ManifestError, match=r"other\.parquet: manifest does not match the schema"):
        read_manifest(tmp_path / "other.parquet")


def test_the_label_space_travels_with_the_manifest(tmp_path: Path) -> None:
    from avf.data.manifest import LabelSpace, label_space, with_label_space

    path = tmp_path / "demo.parquet"
    space = LabelSpace("classification", ("neutral", "calm", "happy"))
    write_manifest(with_label_space(_manifest(), space), path)
    back = read_manifest(path)
    assert label_space(back, path) == space and space.num_outputs == 3
    assert label_space(back[back["status"] == "ok"], path) == space  # survives row selection
    assert LabelSpace("regression", targets=("arousal", "valence")).num_outputs == 2
    write_manifest(_manifest(), tmp_path / "old.parquet")
    with pytest.raises(ManifestError, match=r"old\.parquet: the manifest records no label space.*re-run"):
        label_space(read_manifest(tmp_path / "old.parquet"), tmp_path / "old.parquet")


def test_the_manifest_stage_records_the_adapters_label_space(tmp_path: Path) -> None:
    """The real adapters' class lists reach the manifest (training reads them from there)."""
    from avf.config.data import DatasetSpec
    from avf.data.adapters import get_adapter
    from avf.data.stages.scan import scan_dataset

    (tmp_path / "raw" / "VideoFlash").mkdir(parents=True)
    (tmp_path / "raw" / "AudioWAV").mkdir()
    spec = DatasetSpec(name="cremad", adapter="cremad", raw_dir=str(tmp_path / "raw"))
    scan = scan_dataset(spec)
    adapter = get_adapter("cremad")
    assert scan.labels.classes == tuple(adapter.classes) and scan.labels.task == adapter.task == "classification"
    assert scan.labels.num_outputs == adapter.num_classes == 6
