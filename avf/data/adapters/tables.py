"""Read annotation tables shipped as ``.xlsx`` or as a CSV/TSV export, without extra dependencies.

Several releases (DFEW, CASME II, SAMM, CAS(ME)^3, MMEW) ship their annotations as Excel workbooks.
openpyxl is not part of the locked stack, so :func:`read_rows` parses the first worksheet of an
``.xlsx`` file directly (it is a zip of XML parts: shared strings, inline strings, numbers, booleans).
Users may equally pass a CSV export of the sheet. :func:`read_records` finds the header row even when a
sheet starts with title rows (SAMM's FACS sheet does) and returns one ``dict`` per data row.
"""

from __future__ import annotations

import csv
import re
import zipfile
from collections.abc import Iterable
from pathlib import Path
from xml.etree import ElementTree

_NS = "{http://schemas.openxmlformats.org/spreadsheetml/2006/main}"
_REL_NS = "{http://schemas.openxmlformats.org/officeDocument/2006/relationships}"
_PKG_REL_NS = "{http://schemas.openxmlformats.org/package/2006/relationships}"
_CELL_REF = re.compile(r"^([A-Z]+)(\d+)$")


def _column_index(ref: str) -> int:
    match = _CELL_REF.match(ref)
    letters = match.group(1) if match else "A"
    index = 0
    for ch in letters:
        index = index * 26 + (ord(ch) - ord("A") + 1)
    return index - 1


def _number_text(raw: str) -> str:
    try:
        value = float(raw)
    except ValueError:
        return raw
    return str(int(value)) if value.is_integer() and "e" not in raw.lower() else raw


def _first_sheet_name(zf: zipfile.ZipFile) -> str:
    names = set(zf.namelist())
    try:
        workbook = ElementTree.fromstring(zf.read("xl/workbook.xml"))
        rels = ElementTree.fromstring(zf.read("xl/_rels/workbook.xml.rels"))
        sheet = workbook.find(f"{_NS}sheets/{_NS}sheet")
        if sheet is not None:
            rid = sheet.get(f"{_REL_NS}id")
            for rel in rels.iter(f"{_PKG_REL_NS}Relationship"):
                if rel.get("Id") == rid:
                    target = rel.get("Target", "").lstrip("/")
                    path = target if target.startswith("xl/") else f"xl/{target}"
                    if path in names:
                        return path
    except KeyError:
        pass
    sheets = sorted(n for n in names if n.startswith("xl/worksheets/sheet") and n.endswith(".xml"))
    if not sheets:
        raise ValueError("no worksheet in workbook")
    return sheets[0]


def _read_xlsx(path: Path) -> list[list[str]]:
    try:
        with zipfile.ZipFile(path) as zf:
            shared: list[str] = []
            if "xl/sharedStrings.xml" in zf.namelist():
                root = ElementTree.fromstring(zf.read("xl/sharedStrings.xml"))
                for si in root.iter(f"{_NS}si"):
                    shared.append("".join(t.text or "" for t in si.iter(f"{_NS}t")))
            sheet = ElementTree.fromstring(zf.read(_first_sheet_name(zf)))
    except (zipfile.BadZipFile, ElementTree.ParseError, KeyError) as exc:
        raise ValueError(f"cannot read workbook {path}: {exc}") from None
    rows: list[list[str]] = []
    for row in sheet.iter(f"{_NS}row"):
        cells: dict[int, str] = {}
        for pos, cell in enumerate(row.iter(f"{_NS}c")):
            kind = cell.get("t", "n")
            col = _column_index(cell.get("r", "")) if cell.get("r") else pos
            value_node = cell.find(f"{_NS}v")
            raw = value_node.text if value_node is not None and value_node.text is not None else ""
            if kind == "s":
                text = shared[int(raw)] if raw.isdigit() and int(raw) < len(shared) else ""
            elif kind == "inlineStr":
                text = "".join(t.text or "" for t in cell.iter(f"{_NS}t"))
            elif kind == "n":
                text = _number_text(raw)
            else:  # str, b, e
                text = raw
            cells[col] = text.strip()
        width = max(cells) + 1 if cells else 0
        rows.append([cells.get(i, "") for i in range(width)])
    return rows


def read_rows(path: Path) -> list[list[str]]:
    """All rows of a ``.xlsx`` (first sheet), ``.csv`` or ``.tsv``/``.txt`` (tab-separated) table."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in (".xlsx", ".xlsm"):
        return _read_xlsx(path)
    if suffix == ".xls":
        raise ValueError(f"legacy .xls workbooks are not supported; save {path.name} as .xlsx or .csv")
    text = path.read_text(encoding="utf-8-sig", errors="replace")
    delimiter = "\t" if suffix in (".tsv", ".txt") else ","
    return [[c.strip() for c in row] for row in csv.reader(text.splitlines(), delimiter=delimiter)]


def _norm(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def read_records(path: Path, required: Iterable[str]) -> list[dict[str, str]]:
    """Rows as dicts keyed by normalised header (lower case, letters and digits only).

    The header row is the first row that contains every ``required`` column (compared normalised, so
    "Onset Frame", "OnsetFrame" and "onset_frame" match). Raises ``ValueError`` naming the file when no
    such row exists.
    """
    need = [_norm(r) for r in required]
    rows = read_rows(path)
    for i, row in enumerate(rows):
        header = [_norm(c) for c in row]
        if all(n in header for n in need):
            records = []
            for data in rows[i + 1 :]:
                if not any(c for c in data):
                    continue
                records.append({h: (data[j] if j < len(data) else "") for j, h in enumerate(header) if h})
            return records
    raise ValueError(f"{path}: no header row with the columns {list(required)}")
