"""Finding the face model files from anywhere (an experiment workspace lacks them), and refusing a changed one."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from avf import assets

DETECTOR = "models/assets/face_detection_short_range.tflite"


def test_a_relative_asset_path_is_found_in_the_project_from_another_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # e.g. .dvc/tmp/exps/<name>/: a copy without the git-ignored model files
    assert assets.locate(DETECTOR) == assets.ASSET_DIR / "face_detection_short_range.tflite"
    assert assets.require(DETECTOR) == assets.ASSET_DIR / "face_detection_short_range.tflite"
    (tmp_path / "models" / "assets").mkdir(parents=True)
    own = shutil.copy(assets.ASSET_DIR / "face_detection_short_range.tflite", tmp_path / DETECTOR)
    assert assets.locate(DETECTOR) == Path(own)  # the working directory's own copy comes first
    assert assets.locate("mine.tflite", base_dir=tmp_path) == Path("mine.tflite")  # nowhere: as given
    with pytest.raises(FileNotFoundError, match=r"mine\.tflite: face model file not found"):
        assets.require("mine.tflite")


def test_a_pinned_asset_changed_in_place_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_dir = tmp_path / "assets"
    shutil.copytree(assets.ASSET_DIR, fake_dir)
    monkeypatch.setattr(assets, "ASSET_DIR", fake_dir)
    monkeypatch.chdir(tmp_path)
    assert assets.require("face_landmark.tflite") == fake_dir / "face_landmark.tflite"
    (fake_dir / "face_landmark.tflite").write_bytes(b"another model")
    with pytest.raises(ValueError, match="sha256 does not match models/assets/SHA256SUMS"):
        assets.require("face_landmark.tflite")
    other = tmp_path / "elsewhere.tflite"  # the user's own model: not pinned, not checked
    other.write_bytes(b"x")
    assert assets.require(str(other)) == other
