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
    names = {m["name"] for m in BLOCK.finditer(text)}
    assert "demo" in names and names <= {"demo", "ablations"}
    assert ("ablations" in names) == (ROOT / "reports/ablations/compare.json").is_file()
    assert stale_blocks(text, ROOT) == [], "run `avf report readme` and commit README.md"


def _copy(tmp_path: Path) -> Path:
    for rel in ("README.md", "reports/pretrain", "reports/intermediate", "reports/finetune", "reports/eval",
                "reports/ablations"):  # fmt: skip
        src, dst = ROOT / rel, tmp_path / rel
        if not src.exists():  # the ablation batch's report, before the batch has run
            continue
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
    assert "| **12.50** [" in (root / "README.md").read_text()
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


def test_the_ablation_block_is_the_batch_reports_table(tmp_path: Path) -> None:
    import numpy as np
    import pandas as pd

    from avf.report.compare import ArmRun, summarize, write_report

    rng = np.random.default_rng(0)
    classes = np.array(["angry", "calm", "happy", "sad"])

    def run(arm: str, fold: int, right: float) -> ArmRun:
        actual = rng.choice(classes, 32)
        predicted = np.where(rng.random(32) < right, actual, rng.choice(classes, 32))
        keys = [f"ravdess__{i:02d}" for i in range(32)]
        frame = pd.DataFrame({"key": keys, "actual": actual, "predicted": predicted})
        return ArmRun((fold, 0), f"{arm}-f{fold}-s0", frame, last_uar=50.0 + fold)

    arms = {arm: [run(arm, f, q) for f in (1, 2, 3)] for arm, q in (("full", 0.8), ("scratch", 0.4))}
    write_report(
        tmp_path / "reports/ablations", summarize(arms, n_boot=200), {a: [r.name for r in rs] for a, rs in arms.items()}
    )
    text = render("<!-- avf-report:ablations -->\n<!-- /avf-report:ablations -->\n", tmp_path)
    assert "| full | 3: (1, 0), (2, 0), (3, 0) |" in text and "| scratch − full, paired | 3 pairs |" in text
    assert "| full | last epoch | 51.00 | 52.00 | 53.00 |" in text
    assert "Experiments per arm: full (3), scratch (3); 200 bootstrap replicates" in text
