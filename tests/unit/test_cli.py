"""The `avf` command line as a user meets it: `--help` of every command, `avf doctor`, exit codes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from avf.cli import app

ROOT = Path(__file__).resolve().parents[2]
AVF = str(Path(sys.executable).with_name("avf"))
GROUPS = {"data", "train", "eval", "registry", "model", "report"}


def _commands(group: Any, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    out = []
    for name, cmd in group.commands.items():
        out.append((*prefix, name))
        if hasattr(cmd, "commands"):  # a group (typer may ship its own click)
            out += _commands(cmd, (*prefix, name))
    return out


COMMANDS = _commands(typer.main.get_command(app))


def test_the_command_tree_has_the_documented_groups() -> None:
    top = {c[0] for c in COMMANDS}
    assert GROUPS | {"doctor", "predict", "export"} <= top
    assert {("train", s) for s in ("pretrain", "intermediate", "finetune")} <= set(COMMANDS)
    assert len(COMMANDS) >= 25, COMMANDS


@pytest.mark.parametrize("command", [(), *COMMANDS], ids=lambda c: " ".join(c) or "avf")
def test_help_of_every_command(command: tuple[str, ...]) -> None:
    res = CliRunner().invoke(app, [*command, "--help"])
    assert res.exit_code == 0, res.output
    assert "Usage:" in res.output and "--help" in res.output
    if command and command[0] in GROUPS and len(command) == 1:  # a group lists its commands
        assert "Commands" in res.output


def _avf(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run([AVF, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_doctor_reports_a_healthy_setup() -> None:
    res = _avf("doctor")
    assert res.returncode == 0, res.stdout + res.stderr
    out = res.stdout + res.stderr
    assert "healthy" in out and "FAIL" not in out
    for check in ("torch", "mediapipe", "face models", "params", "tracking uri", "ray address"):
        assert check in out


def test_doctor_names_what_is_wrong(tmp_path: Path) -> None:
    bad = tmp_path / "params.yaml"
    bad.write_text((ROOT / "params.yaml").read_text().replace("  size: tiny", "  szie: tiny", 1))
    res = _avf("--params", str(bad), "doctor", cwd=tmp_path)
    out = res.stdout + res.stderr
    assert res.returncode == 3 and "FAIL" in out and "unhealthy: params" in out


def test_invalid_params_exit_2_naming_the_key(tmp_path: Path) -> None:
    bad = tmp_path / "params.yaml"
    bad.write_text((ROOT / "params.yaml").read_text().replace("  size: tiny", "  szie: tiny", 1))
    res = _avf("--params", str(bad), "train", "pretrain", "--shards", str(tmp_path), "--out", str(tmp_path / "o"))
    out = res.stdout + res.stderr
    assert res.returncode == 2, out
    assert "model.szie" in out and "Traceback" not in out


def test_unknown_command_and_missing_option_exit_2() -> None:
    assert _avf("trian").returncode == 2
    assert _avf("data", "faces").returncode == 2  # --dataset is required
