from __future__ import annotations

from pathlib import Path

import pytest

from avf.data.adapters import get_adapter
from avf.data.adapters.microexpression import composite_label
from avf.data.adapters.tables import read_records
from tests.support.fixtures_datasets import make_casme2, make_casme3, make_mmew, make_samm, make_smic, write_xlsx
from tests.unit.adapters.helpers import assert_clip_ids_safe, by_id, reasons


def _summary(result) -> dict:
    return {k: (c.subject, c.label_name, c.test_fold) for k, c in by_id(result).items()}


def test_composite_mapping() -> None:
    assert [composite_label(e) for e in ("Happiness", "anger", "Contempt", "surprise", "repression", "Other")] == [
        "positive",
        "negative",
        "negative",
        "surprise",
        "negative",  # MEGC2019 counts CASME II's repression as negative
        None,
    ]


@pytest.mark.parametrize("as_csv", [False, True])
def test_casme2_loso_and_composite(tmp_path: Path, as_csv: bool) -> None:
    adapter = get_adapter("casme2")
    result = adapter.scan(make_casme2(tmp_path, as_csv=as_csv))
    assert _summary(result) == {  # repression is negative (MEGC2019); one fold per subject
        "casme2_sub01_EP02_01f": ("casme2_sub01", "positive", 1),
        "casme2_sub01_EP03_02": ("casme2_sub01", "negative", 1),
        "casme2_sub02_EP01_11f": ("casme2_sub02", "surprise", 2),
        "casme2_sub17_EP15_03f": ("casme2_sub17", "negative", 3),
    }
    assert adapter.num_folds == 3
    clip = by_id(result)["casme2_sub01_EP02_01f"]
    assert (clip.extra["onset"], clip.extra["apex"], clip.extra["offset"]) == (46, 59, 86)
    assert clip.extra["frames"] and clip.extra["no_audio"] and clip.audio_path is None and clip.video_path.is_dir()
    assert "frame folder missing" in reasons(result)["EP99_01"]
    assert_clip_ids_safe(result)


def test_samm_header_below_title_rows(tmp_path: Path) -> None:
    result = get_adapter("samm").scan(make_samm(tmp_path))
    assert _summary(result) == {
        "samm_006_006_1_2": ("samm_006", "negative", 1),  # Anger -> negative
        "samm_006_006_1_3": ("samm_006", "positive", 1),
        "samm_011_011_2_1": ("samm_011", "surprise", 2),  # 007 has only "Other" -> no fold
    }
    assert by_id(result)["samm_006_006_1_2"].extra["onset"] == 5562


def test_smic_labels_from_folders_natural_subject_order(tmp_path: Path) -> None:
    result = get_adapter("smic").scan(make_smic(tmp_path))
    assert _summary(result) == {
        "smic_s2_s2_ne_03": ("smic_s2", "negative", 1),
        "smic_s3_s3_ne_02": ("smic_s3", "negative", 2),
        "smic_s3_s3_po_11": ("smic_s3", "positive", 2),
        "smic_s11_s11_sur_01": ("smic_s11", "surprise", 3),
    }
    assert "unknown SMIC emotion" in reasons(result)["happy"]


def test_casme3_variants_and_safe_ids(tmp_path: Path) -> None:
    root = make_casme3(tmp_path)
    three = get_adapter("casme3").scan(root)
    assert _summary(three) == {
        "casme3_spNO_1_a_100": ("casme3_spNO_1", "positive", 1),
        "casme3_spNO_1_a_400": ("casme3_spNO_1", "negative", 1),
        "casme3_spNO_2_b_50": ("casme3_spNO_2", "surprise", 2),
    }
    assert by_id(three)["casme3_spNO_1_a_100"].video_path.name == "color"
    assert_clip_ids_safe(three)
    four = get_adapter("casme3", classes=4).scan(root)
    assert by_id(four)["casme3_spNO_2_c_50"].label_name == "others"
    seven = get_adapter("casme3", classes=7)
    labels = {k: c.label for k, c in by_id(seven.scan(root)).items()}
    assert labels == {
        "casme3_spNO_1_a_100": 3,
        "casme3_spNO_1_a_400": 1,
        "casme3_spNO_2_b_50": 5,
        "casme3_spNO_2_c_50": 6,
    }


def test_mmew_subjects_from_sheet_or_prefix(tmp_path: Path) -> None:
    result = get_adapter("mmew").scan(make_mmew(tmp_path))
    assert _summary(result) == {
        "mmew_S02_S02_anger_01": ("mmew_S02", "negative", 2),
        "mmew_S01_S01_happiness_01": ("mmew_S01", "positive", 1),
    }
    assert by_id(result)["mmew_S02_S02_anger_01"].extra["offset"] == 3
    assert "cannot tell the subject" in reasons(result)["nosubject"]


def test_missing_sheet_or_frames_raise(tmp_path: Path) -> None:
    root = make_casme2(tmp_path)
    (root / "CASME2-coding-20140508.xlsx").unlink()
    with pytest.raises(FileNotFoundError, match="annotation sheet"):
        get_adapter("casme2").scan(root)
    with pytest.raises(FileNotFoundError, match="Cropped"):
        get_adapter("casme2", frames="cropped").scan(root)
    with pytest.raises(FileNotFoundError, match="part_A"):
        get_adapter("casme3").scan(tmp_path)


def test_xlsx_reader_handles_shared_strings_numbers_and_gaps(tmp_path: Path) -> None:
    path = write_xlsx(
        tmp_path / "t.xlsx", [["title"], ["Name", "Onset Frame", "Note"], ["a & b", 12, ""], ["c", 3.5, "x"]]
    )
    assert read_records(path, ["name", "onset_frame"]) == [
        {"name": "a & b", "onsetframe": "12", "note": ""},
        {"name": "c", "onsetframe": "3.5", "note": "x"},
    ]
    with pytest.raises(ValueError, match="no header row"):
        read_records(path, ["Subject"])
