from __future__ import annotations

from pathlib import Path

import pytest

from avf.data.adapters import get_adapter
from tests.support.fixtures_datasets import make_msp_improv
from tests.unit.adapters.helpers import assert_clip_ids_safe, by_id, reasons


def test_folds_are_sessions_and_labels_come_from_the_evaluation_file(tmp_path: Path) -> None:
    result = get_adapter("msp_improv").scan(make_msp_improv(tmp_path))
    clips = by_id(result)
    assert {k.removeprefix("MSP-IMPROV-"): (c.label_name, c.label, c.test_fold) for k, c in clips.items()} == {
        "S01A-F01-P-FM01": ("N", 2, 1),  # target A, label N
        "S01A-M01-R-MM01": ("A", 0, 1),
        "S02H-F02-S-FM03": ("H", 1, 2),
        "S07H-F03-P-FF01": ("H", 1, 3),
        "S09S-M04-R-MM02": ("S", 3, 4),
        "S05N-M05-T-MF02": ("S", 3, 5),
    }
    first = clips["MSP-IMPROV-S01A-F01-P-FM01"]
    assert first.subject == "F01" and first.extra["condition"] == "P" and first.extra["target_emotion"] == "A"
    assert first.audio_path.parts[-5:] == ("Audio", "session1", "S01A", "P", "MSP-IMPROV-S01A-F01-P-FM01.wav")
    why = reasons(result)
    assert "no agreement" in why["MSP-IMPROV-S12A-M02-P-MF05.avi"]
    assert "no label" in why["MSP-IMPROV-S13H-F04-P-FM06.avi"]
    assert "audio missing" in why["MSP-IMPROV-S11N-F06-T-FM04.avi"]
    assert "malformed" in why["MSP-IMPROV-S01A-F01-P.avi"]
    assert_clip_ids_safe(result)


def test_missing_evaluation_file_raises(tmp_path: Path) -> None:
    root = make_msp_improv(tmp_path)
    (root / "Evalution.txt").unlink()
    with pytest.raises(FileNotFoundError, match="evaluation file"):
        get_adapter("msp_improv").scan(root)


def test_hicmae_openface_path_maps_to_clip_id() -> None:
    path = "/r/raw/openface/session1/S01A/P/MSP-IMPROV-S01A-F01-P-FM01/MSP-IMPROV-S01A-F01-P-FM01_aligned"
    assert get_adapter("msp_improv").list_clip_id(path) == "MSP-IMPROV-S01A-F01-P-FM01"
