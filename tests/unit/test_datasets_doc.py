"""docs/datasets.md: every official-list counts table matches the committed fixture of the lists.

A table is announced by a line ``<!-- counts: ADAPTER SOURCE -->`` (SOURCE ``hicmae`` or ``mae-dfer``) and
has the columns ``fold | train | val | test``: per fold the number of non-empty lines of each list file,
``–`` where the file does not exist. The fixture (``tests/fixtures/official_lists/``, read through
``tests/support/official_lists.py``) records the same counts per fold and split, computed from the source
repositories' lists by its ``build.py``.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.support import official_lists

DOC = Path(__file__).resolve().parents[2] / "docs" / "datasets.md"
MARKER = re.compile(r"^<!-- counts: (\S+) (\S+) -->$")
HEADER = "| fold | train | val | test |"
SEPARATOR = "|---:|---:|---:|---:|"
SPLITS = ("train", "val", "test")
MISSING = "–"  # en dash: the split file does not exist

Table = dict[int, dict[str, int | None]]


def parse_tables(text: str) -> dict[tuple[str, str], Table]:
    """``(adapter, source) -> {fold: {split: lines or None}}`` for every counts table of the page."""
    lines = text.splitlines()
    tables: dict[tuple[str, str], Table] = {}
    for i, line in enumerate(lines):
        match = MARKER.match(line.strip())
        if not match:
            continue
        key = (match.group(1), match.group(2))
        where = f"{DOC.name}:{i + 1} ({key[0]} {key[1]})"
        assert key not in tables, f"{where}: a second counts table for the same adapter and source"
        j = i + 1
        while j < len(lines) and not lines[j].strip():
            j += 1
        assert lines[j : j + 2] == [HEADER, SEPARATOR], f"{where}: expected the header {HEADER!r} then {SEPARATOR!r}"
        rows: Table = {}
        for number, row in enumerate(lines[j + 2 :], start=j + 3):
            if not row.startswith("|"):
                break
            cells = [c.strip() for c in row.strip().strip("|").split("|")]
            assert len(cells) == 4, f"{DOC.name}:{number}: expected 4 cells, got {cells}"
            assert cells[0].isdigit(), f"{DOC.name}:{number}: fold {cells[0]!r} is not a number"
            fold = int(cells[0])
            assert fold not in rows, f"{DOC.name}:{number}: fold {fold} twice"
            counts: dict[str, int | None] = {}
            for split, cell in zip(SPLITS, cells[1:], strict=True):
                assert cell == MISSING or cell.isdigit(), f"{DOC.name}:{number}: {split} cell {cell!r}"
                counts[split] = None if cell == MISSING else int(cell)
            rows[fold] = counts
        assert rows, f"{where}: the table has no rows"
        tables[key] = rows
    return tables


def fixture_tables() -> dict[tuple[str, str], Table]:
    """The same shape, from the fixture's manifest (lines per fold and split; None: no such file)."""
    out: dict[tuple[str, str], Table] = {}
    for key in sorted(official_lists.manifest()["datasets"]):
        lists = official_lists.load(key)
        table: Table = {}
        for fold in lists.folds:
            table[fold] = {}
            for split in SPLITS:
                info = lists.split_info(fold, split)
                table[fold][split] = None if info is None else int(info["lines"])
        out[(lists.adapter, lists.source)] = table
    return out


@pytest.fixture(scope="module")
def doc_text() -> str:
    return DOC.read_text(encoding="utf-8")


def test_every_official_list_has_a_counts_table(doc_text: str) -> None:
    documented = set(parse_tables(doc_text))
    expected = set(fixture_tables())
    assert documented == expected, (
        f"tables without fixture lists: {sorted(documented - expected)}; "
        f"fixture lists without a table: {sorted(expected - documented)}"
    )


def test_counts_tables_match_the_lists(doc_text: str) -> None:
    want = fixture_tables()
    wrong = []
    for key, table in sorted(parse_tables(doc_text).items()):
        if key not in want:
            continue
        if sorted(table) != sorted(want[key]):
            wrong.append(f"{key}: folds {sorted(table)} in the doc, {sorted(want[key])} in the lists")
            continue
        for fold in sorted(table):
            for split in SPLITS:
                doc_value, list_value = table[fold][split], want[key][fold][split]
                if doc_value != list_value:
                    shown = [MISSING if v is None else v for v in (doc_value, list_value)]
                    wrong.append(f"{key} fold {fold} {split}: doc {shown[0]}, lists {shown[1]}")
    assert not wrong, "docs/datasets.md counts differ from the official lists:\n" + "\n".join(wrong)


def test_doc_names_the_source_commits(doc_text: str) -> None:
    for name, source in official_lists.manifest()["sources"].items():
        assert source["repo"] in doc_text, f"{name}: {source['repo']} not named in {DOC.name}"
        assert source["commit"] in doc_text, f"{name}: commit {source['commit']} not named in {DOC.name}"


def test_parser_reads_dashes_and_rejects_bad_cells() -> None:
    text = f"<!-- counts: x hicmae -->\n\n{HEADER}\n{SEPARATOR}\n| 1 | 10 | {MISSING} | 3 |\n\nprose\n"
    assert parse_tables(text) == {("x", "hicmae"): {1: {"train": 10, "val": None, "test": 3}}}
    with pytest.raises(AssertionError, match="test cell"):
        parse_tables(text.replace("| 3 |", "| - |"))
