"""The README's results tables, generated from committed report files (``avf report readme``).

A generated block sits between ``<!-- avf-report:NAME -->`` and ``<!-- /avf-report:NAME -->``; its text is a
pure function of the files under ``reports/``, so ``avf report readme --check`` (and a test) fails as soon as
the README and the reports disagree.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from avf.report.compare import ArmRun, from_json, per_run_markdown, summarize, to_markdown
from avf.report.intervals import Interval
from avf.utils.io import atomic_path

BLOCK = re.compile(r"(<!-- avf-report:(?P<name>[a-z-]+) -->\n)(?P<body>.*?)(<!-- /avf-report:(?P=name) -->)", re.S)
ABLATIONS = "reports/ablations/compare.json"


def _json(root: Path, path: str) -> dict:  # type: ignore[type-arg]
    file = root / path
    if not file.is_file():
        raise FileNotFoundError(f"{path}: missing (run the stage or report that writes it)")
    return json.loads(file.read_text())


def demo(root: Path) -> str:
    """Stage by stage, what the committed demo run reached."""
    pre = _json(root, "reports/pretrain/metrics.json")
    first = float(pd.read_csv(root / "reports/pretrain/curve.csv")["train/loss"].iloc[0])
    inter = _json(root, "reports/intermediate/metrics.json")
    fin = _json(root, "reports/finetune/metrics.json")
    ev = _json(root, "reports/eval/metrics.json")
    headline = _clip_interval(root / "reports/eval/predictions.csv")
    rule = {
        "mean_last": f"the mean of the last {fin.get('selected_epochs')} epochs' weights",
        "best": f"the best validation epoch, {fin.get('selected_epoch')}",
        "last": "the last epoch",
    }[fin.get("select", "best")]
    rows = [
        ("1: self-supervised, CREMA-D-style", f"reconstruction loss, first and last of {pre['steps']} steps",
         f"{first:.2f} → {pre['final_loss']:.2f}"),
        ("2: supervised, CREMA-D-style (6 classes, chance 16.7)", "validation UAR of the exported model",
         f"{inter['selected/val/uar']:.2f}"),
        (f"3: fine-tuned, RAVDESS-style fold {ev['fold']} (8 classes, chance 12.5)",
         f"**test UAR, exported model** ({rule}; `reports/eval`), 95% interval over its test clips",
         f"**{ev['test/uar']:.2f}** [{headline.low:.2f}, {headline.high:.2f}]"),
        ("", "test UAR, last epoch", f"{ev['last/test/uar']:.2f}"),
    ]  # fmt: skip
    if "official_test_selected/test/uar" in ev:
        rows.append(("", "test UAR, official protocol: best epoch on the test set itself",
                     f"{ev['official_test_selected/test/uar']:.2f}"))  # fmt: skip
    lines = ["| stage | metric | value |", "|---|---|---|", *(f"| {a} | {b} | {c} |" for a, b, c in rows)]
    return "\n".join(lines) + f"\n\n{ev['clips']} test clips; one clip is {100 / ev['clips']:.1f} points of WAR.\n"


def _clip_interval(predictions: Path) -> Interval:
    """The test UAR of one run with its 95% bootstrap interval over the run's test clips."""
    demo_run = ArmRun((0, 0), "demo", pd.read_csv(predictions))
    return summarize({"demo": [demo_run]}, ("uar",))["arms"]["demo"]["uar"]


def ablations(root: Path) -> str:
    """The ablation batch's arms with 95% intervals and paired differences (``avf report compare --batch``)."""
    summary = from_json(_json(root, ABLATIONS))
    names = summary["experiments"]
    members = ", ".join(f"{arm} ({len(exps)})" for arm, exps in names.items())
    return (
        f"{to_markdown(summary)}\n\nExperiments per arm: {members}; {summary['n_boot']} bootstrap replicates "
        f"(`{ABLATIONS}`). Every run's test UAR:\n\n{per_run_markdown(summary)}\n"
    )


RENDERERS: dict[str, Callable[[Path], str]] = {"demo": demo, "ablations": ablations}


def render(readme: str, root: Path) -> str:
    """``readme`` with every generated block re-rendered from the reports under ``root``."""
    opened = readme.count("<!-- avf-report:")
    if opened != len(BLOCK.findall(readme)):
        raise ValueError(f"{opened} avf-report blocks open but only {len(BLOCK.findall(readme))} close properly")

    def block(m: re.Match[str]) -> str:
        name = m["name"]
        if name not in RENDERERS:
            raise ValueError(f"README block avf-report:{name}: unknown (known: {', '.join(RENDERERS)})")
        try:
            body = RENDERERS[name](root)
        except KeyError as e:
            raise ValueError(f"README block avf-report:{name}: the reports lack {e}") from None
        return f"{m.group(1)}{body}{m.group(4)}"

    return BLOCK.sub(block, readme)


def stale_blocks(readme: str, root: Path) -> list[str]:
    """Names of the blocks whose text differs from what the reports give."""
    fresh = {m["name"]: m["body"] for m in BLOCK.finditer(render(readme, root))}
    return [m["name"] for m in BLOCK.finditer(readme) if fresh[m["name"]] != m["body"]]


def update(path: Path, root: Path) -> list[str]:
    """Re-render ``path`` in place (atomically); returns the blocks that changed."""
    text = path.read_text()
    stale = stale_blocks(text, root)
    if stale:
        with atomic_path(path) as tmp:
            tmp.write_text(render(text, root))
    return stale
