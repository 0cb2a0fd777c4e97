"""Tiny generated dataset trees that mimic each real release's layout and naming (datasets.md §8).

Adapters only list files, so media files are a few placeholder bytes; names, extensions, folder depth
and annotation files (with their documented headers) are exact, including the quirks that break naive
parsers. Each ``make_<dataset>(base)`` builds the tree under ``base`` and returns the dataset root.
"""

from __future__ import annotations

import zipfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from xml.sax.saxutils import escape

MEDIA = b"placeholder media (adapters do not decode)\n"


def touch(path: Path, data: bytes = MEDIA) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def write_text(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def frames(folder: Path, names: Iterable[str]) -> Path:
    for name in names:
        touch(folder / name)
    return folder


def openface_frames(folder: Path, n: int = 3, ext: str = "jpg") -> Path:
    return frames(folder, (f"frame_det_00_{i:06d}.{ext}" for i in range(1, n + 1)))


def _col(index: int) -> str:
    letters = ""
    index += 1
    while index:
        index, rem = divmod(index - 1, 26)
        letters = chr(ord("A") + rem) + letters
    return letters


def write_xlsx(path: Path, rows: Sequence[Sequence[object]]) -> Path:
    """A minimal valid .xlsx (one sheet; strings as shared strings, numbers as numbers)."""
    shared: list[str] = []
    sheet_rows = []
    for r, row in enumerate(rows, start=1):
        cells = []
        for c, value in enumerate(row):
            ref = f"{_col(c)}{r}"
            if isinstance(value, int | float) and not isinstance(value, bool):
                cells.append(f'<c r="{ref}"><v>{value}</v></c>')
            elif value is None or value == "":
                continue
            else:
                shared.append(str(value))
                cells.append(f'<c r="{ref}" t="s"><v>{len(shared) - 1}</v></c>')
        sheet_rows.append(f'<row r="{r}">{"".join(cells)}</row>')
    ns = 'xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"'
    rel_ns = 'xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships"'
    pkg = "http://schemas.openxmlformats.org/package/2006/relationships"
    office = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
    parts = {
        "[Content_Types].xml": (
            '<?xml version="1.0" encoding="UTF-8"?>'
            '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
            '<Default Extension="rels" '
            'ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
            '<Default Extension="xml" ContentType="application/xml"/></Types>'
        ),
        "_rels/.rels": (
            f'<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="{pkg}">'
            f'<Relationship Id="rId1" Type="{office}/officeDocument" Target="xl/workbook.xml"/>'
            "</Relationships>"
        ),
        "xl/workbook.xml": (
            f'<?xml version="1.0" encoding="UTF-8"?><workbook {ns} {rel_ns}><sheets>'
            '<sheet name="Sheet1" sheetId="1" r:id="rId1"/></sheets></workbook>'
        ),
        "xl/_rels/workbook.xml.rels": (
            f'<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="{pkg}">'
            f'<Relationship Id="rId1" Type="{office}/worksheet" Target="worksheets/sheet1.xml"/>'
            f'<Relationship Id="rId2" Type="{office}/sharedStrings" Target="sharedStrings.xml"/>'
            "</Relationships>"
        ),
        "xl/sharedStrings.xml": (
            f'<?xml version="1.0" encoding="UTF-8"?><sst {ns} count="{len(shared)}">'
            + "".join(f"<si><t>{escape(s)}</t></si>" for s in shared)
            + "</sst>"
        ),
        "xl/worksheets/sheet1.xml": (
            f'<?xml version="1.0" encoding="UTF-8"?><worksheet {ns}><sheetData>'
            + "".join(sheet_rows)
            + "</sheetData></worksheet>"
        ),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as zf:
        for name, text in parts.items():
            zf.writestr(name, text)
    return path


# --- Family A: RAVDESS, CREMA-D -------------------------------------------------------------------


def make_ravdess(base: Path) -> Path:
    """RAVDESS raw tree (§8.2) plus the preprocessed twin and negative cases."""
    root = base / "RAVDESS"
    pairs = [
        ("01", "01-01-01-01-01-01"),
        ("04", "01-05-02-02-01-04"),
        ("05", "01-08-01-01-02-05"),
        ("24", "01-02-02-02-02-24"),
    ]
    touch(root / "Actor_01" / "01-01-01-01-01-01-01.mp4")  # full-AV
    for actor, key in pairs:
        touch(root / f"Actor_{actor}" / f"02-{key}.mp4")
        touch(root / f"Actor_{actor}" / f"03-{key}.wav")
        openface_frames(root / "face_aligned" / f"Actor_{actor}" / f"02-{key}")
        touch(root / "audio_16k" / f"Actor_{actor}" / f"03-{key}.wav")
    touch(root / "Actor_02" / "02-02-03-01-01-01-02.mp4")  # song -> excluded
    touch(root / "Actor_02" / "03-02-03-01-01-01-02.wav")
    # negative cases
    touch(root / "Actor_05" / "02-01-03-01-01-01-05.mp4")  # video-only without its 03 wav
    touch(root / "Actor_04" / "02-01-05-02.mp4")  # malformed name
    touch(root / "Actor_04" / "02-01-06-01-01-01-07.mp4")  # actor 07 filed under Actor_04
    touch(root / "Actor_04" / "02-01-09-01-01-01-04.mp4")  # emotion 09 does not exist
    touch(root / "Actor_01" / ".DS_Store")
    return root


def make_ravdess_demo_like(base: Path, actors: int = 24, emotions: Sequence[int] = (1, 5)) -> Path:
    """The embedded demo generator's layout: ``Actor_NN/01-01-EE-01-01-01-NN.mp4`` full-AV files."""
    root = base / "ravdess"
    for actor in range(1, actors + 1):
        for emotion in emotions:
            touch(root / f"Actor_{actor:02d}" / f"01-01-{emotion:02d}-01-01-01-{actor:02d}.mp4")
    return root


CREMAD_CLIPS = (
    "1001_DFA_ANG_XX",
    "1001_IEO_HAP_HI",
    "1001_IEO_SAD_LO",
    "1018_ITS_NEU_XX",
    "1019_WSI_DIS_XX",
    "1072_TSI_FEA_XX",
    "1073_MTI_SAD_XX",
    "1091_IWL_ANG_XX",
    "1076_MTI_NEU_XX",  # broken list
    "1040_ITH_SAD_XX",  # no AudioWAV file
)


def make_cremad(base: Path) -> Path:
    """CREMA-D raw tree (§8.2): VideoFlash/*.flv, AudioWAV/*.wav, tables, negatives."""
    root = base / "CREMA-D"
    for stem in CREMAD_CLIPS:
        touch(root / "VideoFlash" / f"{stem}.flv")
        if stem != "1040_ITH_SAD_XX":
            touch(root / "AudioWAV" / f"{stem}.wav")
        openface_frames(root / "face_aligned" / stem)
    touch(root / "VideoFlash" / "1002_DFA_ANG.flv")  # malformed name
    touch(root / "VideoFlash" / "1003_DFA_XYZ_XX.flv")  # unknown emotion
    touch(root / "VideoFlash" / "1099_DFA_ANG_XX.flv")  # actor out of range
    touch(root / "AudioMP3" / "1001_DFA_ANG_XX.mp3")
    write_text(
        root / "VideoDemographics.csv",
        "ActorID,Age,Sex,Race,Ethnicity\n1001,51,Male,Caucasian,Not Hispanic\n"
        "1018,25,Female,Caucasian,Hispanic\n",
    )
    write_text(
        root / "processedResults" / "tabulatedVotes.csv",
        ",A,D,F,H,N,S,fileName,numResponses,agreement,emoVote,meanEmoResp,meanAngerResp,meanDisgustResp,"
        "meanFearResp,meanHappyResp,meanNeutralResp,meanSadResp,medianEmoResp,meanAngerLvl\n"
        "0,0,0,0,0,10,0,1001_DFA_ANG_XX,10,1.0,N,50,0,0,0,0,50,0,50,0\n",
    )
    return root


def make_cremad_demo_like(base: Path, actors: Sequence[int] = range(1001, 1013)) -> Path:
    """The embedded demo generator's CREMA-D layout (12 actors 1001..1012)."""
    root = base / "cremad"
    for actor in actors:
        for emotion in ("ANG", "HAP"):
            stem = f"{actor}_DFA_{emotion}_XX"
            touch(root / "VideoFlash" / f"{stem}.flv")
            touch(root / "AudioWAV" / f"{stem}.wav")
    return root
