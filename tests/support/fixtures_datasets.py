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
        "ActorID,Age,Sex,Race,Ethnicity\n1001,51,Male,Caucasian,Not Hispanic\n1018,25,Female,Caucasian,Hispanic\n",
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


# --- HiCMAE / AVF-MAE list files -------------------------------------------------------------------

AUTHORS_ROOT = "/share/home/sunlicai/AC/Dataset"


def make_hicmae_lists(base: Path, folds: dict[int, dict[str, Sequence[str]]]) -> Path:
    """``split0K/<split>.csv`` files; ``folds[k][split]`` holds full list lines."""
    for k, splits in folds.items():
        for split, lines in splits.items():
            write_text(base / f"split{k:02d}" / f"{split}.csv", "".join(f"{line}\n" for line in lines))
    return base


def cremad_list_line(stem: str, label: int) -> str:
    prefix = f"{AUTHORS_ROOT}/CREMA-D"
    return f"{prefix}/face_aligned/{stem} {prefix}/AudioWAV/{stem}.wav {label}"


# --- Family B: MAFW, DFEW -------------------------------------------------------------------------

MAFW_SINGLE_TESTS = {  # set -> test lines; every single-label id is tested once
    1: ["00025.mp4 anger", "00028.mp4 disappointment", "10337.mp4 contempt"],
    2: ["03747.mp4 anger"],
    3: ["07542.mp4 helplessness"],
    4: ["00903.mp4 sadness"],
    5: ["00070.mp4 neutral"],
}
MAFW_COMPOUND_TESTS = {
    1: ["20045.mp4 anger_disgust_anxiety", "00025.mp4 anger"],
    2: ["00028.mp4 disappointment_sadness"],
    3: ["03747.mp4 anger_disgust_anxiety"],
    4: ["07542.mp4 anxiety_helplessness"],
    5: ["10337.mp4 contempt"],
}


def _write_sets(folder: Path, tests: dict[int, list[str]]) -> None:
    every = [line for lines in tests.values() for line in lines]
    for k, lines in tests.items():
        write_text(folder / f"set_{k}" / "test.txt", "".join(f"{line}\n" for line in lines))
        train = [line for line in every if line not in lines]
        write_text(folder / f"set_{k}" / "train.txt", "".join(f"{line}\n" for line in train))


def make_mafw(base: Path, split_dir: str = "Train & Test Set") -> Path:
    """MAFW (§8.3): clips, png frames, audio_16k (none for 00903), split folders with a space and '&'."""
    root = base / "MAFW"
    ids = ["00025", "00028", "03747", "07542", "10337", "20045", "00903", "00070"]
    for clip in ids:
        touch(root / "data" / "clips" / f"{clip}.mp4")
        openface_frames(root / "data" / "frames" / clip, ext="png")
        if clip != "00903":  # no audio stream -> no wav
            touch(root / "data" / "audio_16k" / f"{clip}.wav")
    _write_sets(root / split_dir / "single" / "no_caption", MAFW_SINGLE_TESTS)
    _write_sets(root / split_dir / "compound" / "no_caption", MAFW_COMPOUND_TESTS)
    malformed = "".join(f"{line}\n" for line in [*MAFW_SINGLE_TESTS[1], "7542 helplessness"])
    write_text(root / split_dir / "single" / "no_caption" / "set_1" / "test.txt", malformed)
    write_text(root / "single_label.txt", "03747.mp4  anger  一个男人在吼叫。  A man is shouting.\n")
    write_text(root / "multi_label.txt", "20045.mp4\tanger_disgust_anxiety\t一个女人皱眉。\tA woman frowns.\n")
    return root


def make_dfew(base: Path) -> Path:
    """DFEW (§8.3): original clips, face folders (00006 face-undetected), split CSVs, annotation.xlsx."""
    root = base / "DFEW"
    for i in range(1, 9):
        clip = f"{i:05d}"
        touch(root / "Clip" / "original" / f"{clip}.mp4")
        if i != 6:
            frames(root / "Clip" / "clip_224x224" / clip, (f"{clip}_{j:05d}.jpg" for j in range(1, 4)))
            frames(root / "Clip" / "clip_224x224_16f" / clip, (f"{clip}_{j}.jpg" for j in range(1, 17)))
    split = root / "EmoLabel_DataSplit"
    # 00006: no face folder; 00008: annotation 0 (not single-labelled); 9: label out of range
    tests = {1: [(1, 1), (2, 2)], 2: [(3, 3), (6, 6)], 3: [(4, 4)], 4: [(5, 5)], 5: [(7, 7), (8, 2), (9, 9)]}
    every = [row for rows in tests.values() for row in rows]
    for k, rows in tests.items():
        body = "".join(f"{i},{label}\n" for i, label in rows)
        write_text(split / "test(single-labeled)" / f"set_{k}.csv", "video_name,label\n" + body)
        train = "".join(f"{i},{label}\n" for i, label in every if (i, label) not in rows)
        write_text(split / "train(single-labeled)" / f"set_{k}.csv", "video_name,label\n" + train)
    header = ["vote_happy", "vote_sad", "vote_neutral", "vote_angry", "vote_surprise", "vote_disgust", "vote_fear"]
    rows: list[list[object]] = [[*header, "clip_name", "annotation"]]
    for i in range(1, 8):
        votes = [0] * 7
        votes[i - 1] = 8
        votes[(i) % 7] = 2
        rows.append([*votes, i, i])
    rows.append([5, 5, 0, 0, 0, 0, 0, 8, 0])  # not single-labelled
    write_xlsx(root / "Annotation" / "annotation.xlsx", rows)
    return root


# --- Family C: MER2023, MER2024 -------------------------------------------------------------------


def make_mer2023(base: Path) -> Path:
    """MER2023 (§8.4): mixed extensions, train/test1..3, label CSVs covering all six classes."""
    root = base / "mer2023-dataset"
    train = {
        "sample_00000000": ("happy", 2.3, ".mp4"),
        "sample_00000007": ("neutral", 0.0, ".avi"),
        "sample_00000011": ("angry", -2.1, ".mp4"),
        "sample_00000012": ("sad", -3.0, ".mp4"),
        "sample_00000013": ("worried", -1.2, ".mp4"),
        "sample_00000014": ("surprise", 1.1, ".avi"),
        "sample_00000015": ("bored", 0.0, ".mp4"),  # unknown label
        "sample_00000016": ("happy", 1.0, None),  # video missing
    }
    for name, (_, _, ext) in train.items():
        if ext:
            touch(root / "train" / f"{name}{ext}")
        openface_frames(root / "face_aligned" / name)
    write_text(
        root / "train-label.csv",
        "name,discrete,valence\n" + "".join(f"{n},{c},{v}\n" for n, (c, v, _) in train.items()),
    )
    touch(root / "test1" / "sample_00000021.mp4")
    touch(root / "test1" / "sample_00000022.avi")
    write_text(
        root / "test1-label.csv", "name,discrete,valence\nsample_00000021,sad,-2.0\nsample_00000022,worried,-1.0\n"
    )
    touch(root / "test2" / "sample_00000031.mp4")
    touch(root / "test3" / "sample_00000041.mp4")
    return root


MER2024_LABELS = {
    "sample_00000000": "happy",
    "sample_00000001": "worried",
    "sample_00000002": "neutral",
    "sample_00000003": "angry",
    "sample_00000004": "surprise",
    "sample_00000005": "sad",
}


def make_mer2024_release(base: Path) -> Path:
    """MER2024 release layout (§8.4): video-labeled/, label-disdim.csv, unlabelled pool."""
    root = base / "mer2024-dataset"
    for name in MER2024_LABELS:
        touch(root / "video-labeled" / f"{name}.mp4")
    rows = "".join(f"{n},{c},0.0\n" for n, c in MER2024_LABELS.items())
    rows += "sample_00000006,bored,0.0\nsample_00000007,happy,1.0\n"  # unknown label; video missing
    write_text(root / "label-disdim.csv", "name,discrete,valence\n" + rows)
    touch(root / "video-unlabeled-with-test2noise" / "sample_00100000.mp4")
    touch(root / "video-unlabeled-with-test2noise" / "sample_00100001.mp4")
    touch(root / "video-unlabeled-with-test2noise" / "readme.txt")
    touch(root / "video-unlabeled-with-test2noise" / "clip 1.mp4")  # malformed name
    return root


def make_mer2024_avf(base: Path) -> Path:
    """AVF-MAE's MER2024-labeled tree: face_aligned frames, audio_16k, labels/set_K/{train,test}.txt."""
    root = base / "MER2024-labeled"
    names = list(MER2024_LABELS)
    for name in names:
        openface_frames(root / "data" / "face_aligned" / name)
        if name != "sample_00000005":
            touch(root / "data" / "audio_16k" / f"{name}.wav")
    tests = {k: [f"{n}.mp4 {MER2024_LABELS[n]}" for n in names[k - 1 :: 5]] for k in range(1, 6)}
    _write_sets(root / "labels", tests)
    return root


# --- Family D: MSP-IMPROV, IEMOCAP ----------------------------------------------------------------

MSP_CLIPS = {  # id -> consensus category in the evaluation file (None: no line at all)
    "S01A-F01-P-FM01": "N",  # target A but label N
    "S01A-M01-R-MM01": "A",
    "S02H-F02-S-FM03": "H",
    "S05N-M05-T-MF02": "S",
    "S07H-F03-P-FF01": "H",
    "S09S-M04-R-MM02": "S",
    "S11N-F06-T-FM04": "N",
    "S12A-M02-P-MF05": "O",  # no agreement -> dropped
    "S13H-F04-P-FM06": None,  # not in the evaluation file
}


def make_msp_improv(base: Path) -> Path:
    """MSP-IMPROV (§8.5): Audio/ and Video/ session trees, evaluation file (assumed format)."""
    root = base / "MSP-IMPROV"
    lines = []
    for clip, category in MSP_CLIPS.items():
        session = int(clip.split("-")[1][1:])
        rel = Path(f"session{session}") / clip.split("-")[0] / clip.split("-")[2] / f"MSP-IMPROV-{clip}"
        touch((root / "Video" / rel).with_suffix(".avi"))
        if clip != "S11N-F06-T-FM04":  # audio missing
            touch((root / "Audio" / rel).with_suffix(".wav"))
        if category is not None:
            lines.append(f"UTD-IMPROV-{clip}.avi; {category}; A:2.500000; V:3.000000; D:2.750000; N:3.000000;")
            lines.append("Evaluator1; Neutral; A:3.000000; V:3.000000; D:3.000000; N:3.000000;")
            lines.append("")
    touch(root / "Video" / "session1" / "S01A" / "P" / "MSP-IMPROV-S01A-F01-P.avi")  # malformed
    write_text(root / "Evalution.txt", "\n".join(lines) + "\n")
    return root


def make_iemocap(base: Path) -> Path:
    """IEMOCAP (§8.5): one dialog per session 1 and 5 with neu/exc/fru/xxx/ang/sad utterances."""
    root = base / "IEMOCAP_full_release"
    for session, lead in ((1, "F"), (5, "M")):
        dialog = f"Ses0{session}{lead}_impro01"
        touch(root / f"Session{session}" / "dialog" / "avi" / "DivX" / f"{dialog}.avi")
        rows = [
            ("0.10", "0.90", f"{dialog}_F000", "neu", "2.5000, 2.5000, 2.5000"),
            ("1.00", "1.60", f"{dialog}_M000", "exc", "4.0000, 3.5000, 3.0000"),
            ("1.70", "2.20", f"{dialog}_F001", "fru", "2.0000, 3.5000, 3.0000"),
            ("2.30", "2.60", f"{dialog}_M001", "xxx", "2.5000, 3.0000, 3.0000"),
            ("2.60", "2.95", f"{dialog}_F002", "ang" if session == 1 else "sad", "1.5000, 4.0000, 4.0000"),
        ]
        text = "% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]\n\n"
        for start, end, utterance, category, vad in rows:
            text += f"[{start} - {end}]\t{utterance}\t{category}\t[{vad}]\n"
            text += "C-E1:\tNeutral;\t()\nA-E3:\tval 3; act 2; dom  2;\t()\n\n"
            touch(root / f"Session{session}" / "sentences" / "wav" / dialog / f"{utterance}.wav")
        write_text(root / f"Session{session}" / "dialog" / "EmoEvaluation" / f"{dialog}.txt", text)
    # a dialog whose video is missing
    write_text(
        root / "Session1" / "dialog" / "EmoEvaluation" / "Ses01F_script01_1.txt",
        "[0.50 - 1.50]\tSes01F_script01_1_F000\tsad\t[2.0, 2.0, 2.0]\n",
    )
    return root


# --- Family E: Werewolf-XL, AVCAffe ---------------------------------------------------------------

WEREWOLF_TARGETS = {
    "01_01_128": (1.0, 0.0, 0.5),
    "06_09_001": (1.5, 0.75, 1.0),
    "07_01_200": (0.5, -0.25, 0.0),
    "12_03_015": (2.0, 1.25, 1.5),
    "19_01_010": (-0.5, -0.75, -1.5),
    "30_05_436": (0.0, 0.25, 0.5),
    "01_02_94": (1.5, 1.0, 1.0),  # utterance index not zero-padded, as in the published lists
}


def make_werewolf_xl(base: Path, with_table: bool = True) -> Path:
    """Werewolf-XL (§8.6): OpenFace frame folders, audio_16k, a label table (id, arousal, valence, dominance)."""
    root = base / "Werewolf-XL"
    for clip in [*WEREWOLF_TARGETS, "31_01_001", "02_02_002"]:
        openface_frames(root / "openface" / clip / f"{clip}_aligned")
        touch(root / "audio_16k" / f"{clip}.wav")
    (root / "audio_16k" / "12_03_015.wav").unlink()  # audio missing
    rows = "".join(f"{c},{a},{v},{d}\n" for c, (a, v, d) in WEREWOLF_TARGETS.items())
    if with_table:
        write_text(root / "labels.csv", "id,arousal,valence,dominance\n" + rows + "31_01_001,0,0,0\n")
    return root


def make_avcaffe(base: Path) -> Path:
    """AVCAffe (§8.6): shorter_segments sub-clips, ground truths, info lists."""
    root = base / "AVCAffe"
    clips = root / "videos" / "shorter_segments"
    for n in (1, 2, 3):
        touch(clips / "aiim001" / "task_1" / f"aiim001_task_1_{n}.avi")
    touch(clips / "aiim003" / "task_2" / "aiim003_task_2_1.avi")
    touch(clips / "aiim005" / "task_1" / "aiim005_task_1_1.avi")  # in neither info list
    touch(clips / "aiim003" / "task_3" / "aiim003_task_3_1.avi")  # no ground truth
    touch(clips / "aiim003" / "task_2" / "aiim003_task_1_9.avi")  # task mismatch with its folder
    gt = root / "ground_truths"
    write_text(gt / "arousal.txt", "aiim001_task_1, Excited\naiim003_task_2, Calm\naiim005_task_1, Neutral\n")
    write_text(gt / "valence.txt", "aiim001_task_1, Pleased\naiim003_task_2, Unpleasant\naiim005_task_1, Meh\n")
    write_text(root / "info" / "val.txt", "aiim001\n")
    write_text(root / "info" / "train.txt", "aiim003\n")
    write_text(root / "info" / "no_audio_files.txt", "aiim001_task_1_3.avi\n")
    return root


# --- Family F: micro-expression -------------------------------------------------------------------


def make_casme2(base: Path, as_csv: bool = False) -> Path:
    """CASME II (§8.7): raw frame folders and the coding sheet (xlsx, or its CSV export)."""
    root = base / "CASME2"
    rows: list[list[object]] = [
        ["Subject", "Filename", "OnsetFrame", "ApexFrame", "OffsetFrame", "Action Units", "Estimated Emotion"],
        [1, "EP02_01f", 46, 59, 86, "12", "happiness"],
        [1, "EP03_02", 1, "/", 61, "4", "repression"],
        [2, "EP01_11f", 21, 31, 46, "1+2", "surprise"],
        [17, "EP15_03f", 5, 10, 20, "4+7", "disgust"],
        [17, "EP99_01", 5, 10, 20, "4", "disgust"],  # frame folder missing
    ]
    for subject, sample in ((1, "EP02_01f"), (1, "EP03_02"), (2, "EP01_11f"), (17, "EP15_03f")):
        frames(root / "CASME2_RAW_selected" / f"sub{subject:02d}" / sample, (f"img{k}.jpg" for k in (46, 47, 52)))
    if as_csv:
        write_text(root / "CASME2-coding-20140508.csv", "".join(",".join(map(str, r)) + "\n" for r in rows))
    else:
        write_xlsx(root / "CASME2-coding-20140508.xlsx", rows)
    return root


def make_samm(base: Path) -> Path:
    """SAMM (§8.7): subject/sample frame folders and the FACS sheet with title rows above its header."""
    root = base / "SAMM"
    rows: list[list[object]] = [
        ["SAMM Micro-Movement FACS Codes"],
        [],
        [
            "Subject",
            "Filename",
            "Inducement Code",
            "Onset Frame",
            "Apex Frame",
            "Offset Frame",
            "Duration",
            "Type",
            "Action Units",
            "Notes",
            "Estimated Emotion",
        ],
        ["006", "006_1_2", 1, 5562, 5588, 5605, 44, "Micro - 1/2", "4+7", "", "Anger"],
        ["006", "006_1_3", 1, 3912, 3948, 3995, 84, "Micro - 1/2", "12", "", "Happiness"],
        ["007", "007_6_1", 6, 1200, 1220, 1250, 51, "Micro - 1/2", "1+2", "", "Other"],
        ["011", "011_2_1", 2, 100, 120, 140, 41, "Micro - 1/2", "1+2", "", "Surprise"],
        ["011", "011_3_9", 3, 10, 20, 30, 21, "Micro - 1/2", "4", "", "Fear"],  # frame folder missing
        ["", "x_1", 3, 10, 20, 30, 21, "Micro - 1/2", "4", "", "Fear"],  # no subject
    ]
    for subject, sample, first in (
        ("006", "006_1_2", 5562),
        ("006", "006_1_3", 3912),
        ("007", "007_6_1", 1200),
        ("011", "011_2_1", 100),
    ):
        frames(root / subject / sample, (f"{subject}_{first + k:05d}.jpg" for k in range(3)))
    write_xlsx(root / "SAMM_Micro_FACS_Codes_v2.xlsx", rows)
    return root


def make_smic(base: Path) -> Path:
    """SMIC-HS (§8.7): labels are folder names; s3 and s11 (natural sort) plus a non-micro folder."""
    root = base / "SMIC"
    for subject, emotion, sample in (
        ("s3", "positive", "s3_po_11"),
        ("s3", "negative", "s3_ne_02"),
        ("s11", "surprise", "s11_sur_01"),
        ("s2", "negative", "s2_ne_03"),
    ):
        frames(root / "HS" / subject / "micro" / emotion / sample, (f"image{k:06d}.bmp" for k in range(1, 4)))
    touch(root / "HS" / "s3" / "non_micro" / "s3_nm_01" / "image000001.bmp")
    frames(root / "HS" / "s2" / "micro" / "happy" / "s2_x_01", ["image000001.bmp"])  # unknown folder
    return root


def make_casme3(base: Path) -> Path:
    """CAS(ME)^3 part A: ``part_A/<Subject>/<Filename>/color/N.jpg`` (1, 2, 10: lexicographic != numeric)."""
    root = base / "CASME3"
    rows: list[list[object]] = [
        ["Subject", "Filename", "Onset", "Apex", "Offset", "AU", "Objective class", "emotion"],
        ["spNO.1", "a", 100, 110, 130, "R12", 1, "happy"],
        ["spNO.1", "a", 400, 410, 430, "L4", 2, "disgust"],
        ["spNO.2", "b", 50, 60, 70, "1+2", 3, "surprise"],
        ["spNO.2", "c", 50, 60, 70, "4", 7, "others"],
        ["spNO.3", "a", 1, 2, 3, "4", 2, "fear"],  # frame folder missing
    ]
    for subject, sample in (("spNO.1", "a"), ("spNO.2", "b"), ("spNO.2", "c")):
        frames(root / "part_A" / subject / sample / "color", ["1.jpg", "2.jpg", "10.jpg"])
    write_xlsx(root / "annotation" / "cas(me)3_part_A_ME_label_JpgIndex_v2.xlsx", rows)
    return root


def make_mmew(base: Path) -> Path:
    """MMEW: ``Micro_Expression/<emotion>/<sample>/`` with an optional subject sheet."""
    root = base / "MMEW"
    for emotion, sample in (
        ("happiness", "S01_happiness_01"),
        ("anger", "S02_anger_01"),
        ("others", "S01_others_01"),
        ("surprise", "nosubject"),
    ):
        frames(root / "Micro_Expression" / emotion / sample, (f"{k}.jpg" for k in range(1, 4)))
    write_text(
        root / "MMEW_Micro_Exp.csv", "Subject,Filename,OnsetFrame,ApexFrame,OffsetFrame\nS02,S02_anger_01,1,2,3\n"
    )
    return root


# --- Family G: pre-training (VoxCeleb2) -----------------------------------------------------------


def make_voxceleb2(base: Path) -> Path:
    """HiCMAE-style VoxCeleb2 (§8.8): video/file~/dev/mp4 + audio/file~/dev/aac wav/m4a, one empty mp4."""
    root = base / "VoxCeleb2"
    video = root / "video" / "file~" / "dev" / "mp4"
    audio = root / "audio" / "file~" / "dev" / "aac"
    touch(video / "id00012" / "21Uxsk56VDQ" / "00001.mp4")
    touch(audio / "id00012" / "21Uxsk56VDQ" / "00001.wav")
    touch(audio / "id00012" / "21Uxsk56VDQ" / "00001.m4a")
    touch(video / "id00012" / "21Uxsk56VDQ" / "00002.mp4")
    touch(audio / "id00012" / "21Uxsk56VDQ" / "00002.m4a")  # raw audio only
    touch(video / "id00015" / "0fijmz4vTVU" / "00001.mp4")  # no audio twin
    touch(video / "id00015" / "0fijmz4vTVU" / "00002.mp4", b"")  # empty file
    touch(video / "id00015" / "0fijmz4vTVU" / "notes.txt")
    return root


# --- A user's own data (adapter csv) ----------------------------------------------------------------


def make_user_csv(base: Path) -> Path:
    """Own videos listed in CSV files: ``clips.csv`` (classification, no folds) and ``va.csv`` (regression,
    split column); a frame folder with its own wav, and a row naming a missing file in each."""
    root = base / "MyClips"
    for rel in ("s1/a.mp4", "s1/b.mp4", "s2/a.mp4", "s2/b.mov", "s3/a.mp4"):
        touch(root / rel)
    frames(root / "s3" / "take 2", ["1.jpg", "2.jpg", "10.jpg"])
    touch(root / "s3" / "take2.wav")
    write_text(
        root / "clips.csv",
        "path,label,subject,audio_path\n"
        "s1/a.mp4,happy,s1,\n"
        "s1/b.mp4,sad,s1,\n"
        "s2/a.mp4,happy,s2,\n"
        "s2/b.mov,sad,s2,\n"
        "s3/a.mp4,happy,s3,\n"
        "s3/take 2,sad,s3,s3/take2.wav\n"
        "s4/missing.mp4,sad,s4,\n",
    )
    write_text(
        root / "va.csv",
        "path,subject,arousal,valence,split\n"
        "s1/a.mp4,s1,0.5,-0.25,train\n"
        "s2/a.mp4,s2,0.1,0.2,val\n"
        "s3/a.mp4,s3,-0.5,0.75,test\n"
        "s3/take 2,s3,0.0,0.0,test\n"
        "s2/b.mov,s2,high,0.1,train\n",
    )
    return root
