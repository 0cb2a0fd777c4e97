"""`avf report ablations`: parsing `dvc exp show --json`, differing params, deltas, and a real DVC repo."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from avf.report.ablations import differing_params, metric_table, parse_exp_show, select, write_report

PAYLOAD = [
    {"rev": "workspace", "name": None, "data": {"params": {}, "metrics": {}}, "error": None, "experiments": None},
    {
        "rev": "a" * 40,
        "name": "main",
        "data": {
            "params": {"params.yaml": {"data": {"model": {"size": "tiny", "iavcl": True}, "seed": 0}}},
            "metrics": {"reports/eval/metrics.json": {"data": {"test/uar": 50.0, "dataset": "ravdess"}}},
        },
        "error": None,
        "experiments": [
            {
                "name": "no-iavcl",
                "executor": None,
                "revs": [
                    {
                        "rev": "b" * 40,
                        "name": "no-iavcl",
                        "error": None,
                        "data": {
                            "params": {"params.yaml": {"data": {"model": {"size": "tiny", "iavcl": False}, "seed": 0}}},
                            "metrics": {"reports/eval/metrics.json": {"data": {"test/uar": 42.5}}},
                        },
                    }
                ],
            },
            {
                "name": "broken",
                "executor": None,
                "revs": [{"rev": "c" * 40, "name": "broken", "error": {"msg": "x"}, "data": {}}],
            },
        ],
    },
]


def test_parse_select_and_compare() -> None:
    exps = parse_exp_show(PAYLOAD)
    assert [e.name for e in exps] == ["main", "no-iavcl"]  # workspace and failed experiments are skipped
    assert exps[0].metrics == {"reports/eval/metrics.json:test/uar": 50.0}  # strings are not metrics
    base, chosen = select(exps, [], "main")
    assert base.name == "main" and [e.name for e in chosen] == ["no-iavcl"]
    params = differing_params([base, *chosen])
    assert list(params.index) == ["model.iavcl"]
    table = metric_table(base, chosen)
    row = table.set_index("metric").loc["reports/eval/metrics.json:test/uar"]
    assert row["Δ no-iavcl"] == pytest.approx(-7.5)
    with pytest.raises(ValueError, match="unknown experiment"):
        select(exps, ["nope"], None)


def test_write_report_from_parsed(tmp_path: Path) -> None:
    exps = parse_exp_show(PAYLOAD)
    exps[1].curves["finetune"] = pd.DataFrame({"epoch": [0, 1], "val/uar": [20.0, 40.0], "train/loss": [2.0, 1.5]})
    exps[0].curves["finetune"] = pd.DataFrame({"epoch": [0, 1], "val/uar": [25.0, 50.0], "train/loss": [2.0, 1.2]})
    paths = write_report(tmp_path, tmp_path / "out", [], "main", experiments=exps)
    md = paths["md"].read_text()
    assert "model.iavcl" in md and "-7.5" in md and "data:image/png;base64," in md
    page = paths["html"].read_text()
    assert page.count("<img ") == 3  # metric bars, val/uar curve, train/loss curve


@pytest.mark.timeout(300)
def test_report_over_real_dvc_experiments(tmp_path: Path) -> None:
    env = {**os.environ, "DVC_NO_ANALYTICS": "1"}
    bindir = Path(sys.executable).parent

    def run(*args: str) -> str:
        return subprocess.run(args, cwd=tmp_path, env=env, check=True, capture_output=True, text=True).stdout

    run("git", "init", "-q")
    run("git", "config", "user.email", "t@example.com")
    run("git", "config", "user.name", "t")
    run(str(bindir / "dvc"), "init", "-q")
    (tmp_path / "params.yaml").write_text("train:\n  lr: 0.1\n")
    script = (
        "import json, yaml; p = yaml.safe_load(open('params.yaml'))['train']; import os; "
        "os.makedirs('reports/eval', exist_ok=True); os.makedirs('reports/finetune', exist_ok=True); "
        "json.dump({'test/uar': 100 * p['lr']}, open('reports/eval/metrics.json', 'w')); "
        "open('reports/finetune/epochs.csv', 'w').write('epoch,val/uar\\n0,1\\n1,' + str(p['lr']) + '\\n')"
    )
    (tmp_path / "dvc.yaml").write_text(
        "stages:\n  train:\n    cmd: " + json.dumps(f'{sys.executable} -c "{script}"') + "\n"
        "    params: [train.lr]\n    metrics:\n      - reports/eval/metrics.json:\n          cache: false\n"
        "    plots:\n      - reports/finetune/epochs.csv:\n          cache: false\n"
    )
    run(str(bindir / "dvc"), "repro", "-q")
    run("git", "add", "-A")
    run("git", "commit", "-qm", "baseline")
    run(str(bindir / "dvc"), "exp", "run", "-q", "-n", "lr-high", "-S", "train.lr=0.3")
    old = os.environ.get("PATH", "")
    os.environ["PATH"] = f"{bindir}:{old}"
    try:
        paths = write_report(tmp_path, tmp_path / "out", ["lr-high"], None)
        md = paths["md"].read_text()
        assert "train.lr" in md and "lr-high" in md
        assert "| reports/eval/metrics.json:test/uar | 10 | 30 | 20 |" in md  # baseline, experiment, delta

        # a new baseline commit: its experiments list no longer shows lr-high, --all-commits does
        (tmp_path / "params.yaml").write_text("train:\n  lr: 0.2\n")
        run(str(bindir / "dvc"), "repro", "-q")
        run("git", "commit", "-qam", "new baseline")
        with pytest.raises(ValueError, match=r"lr-high.*--all-commits"):
            write_report(tmp_path, tmp_path / "out2", ["lr-high"], None)
        md = write_report(tmp_path, tmp_path / "out2", ["lr-high"], None, all_commits=True)["md"].read_text()
    finally:
        os.environ["PATH"] = old
    assert "| reports/eval/metrics.json:test/uar | 20 | 30 | 10 |" in md  # against the newest commit


def test_metrics_equal_everywhere_are_left_out_but_counted() -> None:
    exps = parse_exp_show(PAYLOAD)
    for e in exps:  # e.g. the data stages' counts, the same in every experiment
        e.metrics["reports/data/faces/ravdess/summary.json:processed"] = 192
    exps[1].metrics["reports/finetune/metrics.json:selected_epoch"] = 7
    base, chosen = select(exps, [], "main")
    table = metric_table(base, chosen)
    assert list(table["metric"]) == [
        "reports/eval/metrics.json:test/uar",  # headline metrics always
        "reports/finetune/metrics.json:selected_epoch",  # differs (missing in the baseline)
    ]
    assert table.attrs["omitted"] == 1
    assert len(metric_table(base, chosen, changed_only=False)) == 3
