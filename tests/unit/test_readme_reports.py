"""The README's results tables are generated from the committed report files and cannot drift from them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from avf.report.readme import BLOCK, render, stale_blocks
from tests.support.cli import invoke

ROOT = Path(__file__).resolve().parents[2]


def test_the_readme_tables_are_what_the_committed_reports_give() -> None:
    text = (ROOT / "README.md").read_text()
    assert {m["name"] for m in BLOCK.finditer(text)} == {"demo", "ablations"}
    assert stale_blocks(text, ROOT) == [], "run `avf report readme` and commit README.md"


def _copy(tmp_path: Path) -> Path:
    for rel in ("README.md", "reports/pretrain", "reports/intermediate", "reports/finetune", "reports/eval",
                "reports/ablations"):  # fmt: skip
        src, dst = ROOT / rel, tmp_path / rel
        if src.is_dir():
            shutil.copytree(src, dst)
        else:
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(src, dst)
    return tmp_path


def test_a_changed_report_makes_the_check_fail_until_the_readme_is_rewritten(tmp_path: Path) -> None:
    root = _copy(tmp_path)
    metrics = root / "reports/eval/metrics.json"
    payload = json.loads(metrics.read_text())
    payload["test/uar"] = 12.5
    metrics.write_text(json.dumps(payload))
    args = ("report", "readme", "--readme", str(root / "README.md"), "--project", str(root))
    failed = invoke(*args, "--check")
    assert failed.exit_code == 1 and "demo" in failed.output and "ablations" not in failed.output
    assert invoke(*args).exit_code == 0
    assert "| **12.50** |" in (root / "README.md").read_text()
    assert invoke(*args, "--check").exit_code == 0


def test_a_hand_edit_of_a_table_is_caught(tmp_path: Path) -> None:
    root = _copy(tmp_path)
    readme = root / "README.md"
    readme.write_text(readme.read_text().replace("| test UAR, last epoch |", "| test UAR, final epoch |"))
    assert stale_blocks(readme.read_text(), root) == ["demo"]


def test_an_unknown_or_unclosed_block_or_a_missing_report_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="avf-report:nope"):
        render("<!-- avf-report:nope -->\n<!-- /avf-report:nope -->", ROOT)
    with pytest.raises(ValueError, match="1 avf-report blocks open but only 0 close"):
        render("<!-- avf-report:demo -->\n| old |\n", ROOT)
    with pytest.raises(FileNotFoundError, match=r"reports/pretrain/metrics\.json"):
        render("<!-- avf-report:demo -->\n<!-- /avf-report:demo -->", tmp_path)
