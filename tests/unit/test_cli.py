"""The `avf` command line as a user meets it: `--help` of every command, `avf doctor`, exit codes."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from itertools import takewhile
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from avf.cli import app
from tests.support.dvc_stages import dvc_stages

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


ROOT_COMMAND = typer.main.get_command(app)
COMMANDS = _commands(ROOT_COMMAND)


def _resolve(path: tuple[str, ...]) -> Any:
    """The click command at ``path`` (``("data", "faces")``); KeyError names the missing step."""
    cmd = ROOT_COMMAND
    for name in path:
        cmd = cmd.commands[name]
    return cmd


def _long_options(cmd: Any) -> set[str]:
    return {o for p in cmd.params if not getattr(p, "hidden", False) for o in p.opts if o.startswith("--")}


def _listed_in_help(cmd: Any) -> set[str]:
    """What ``--help`` of ``cmd`` must name: its visible subcommands, arguments and long options."""
    subcommands = {name for name, sub in getattr(cmd, "commands", {}).items() if not getattr(sub, "hidden", False)}
    arguments = {p.name for p in cmd.params if not p.opts[0].startswith("-")}
    return subcommands | arguments | _long_options(cmd)


def _stage_commands() -> dict[str, list[str]]:
    """``dvc.yaml`` stage name -> its command split like a shell (``foreach`` stages: their ``do`` part)."""
    return {name: shlex.split(stage["cmd"]) for name, stage in dvc_stages().items()}


def test_the_command_tree_has_the_documented_groups() -> None:
    top = {c[0] for c in COMMANDS}
    assert GROUPS | {"doctor", "predict", "export"} <= top
    assert {("train", s) for s in ("pretrain", "intermediate", "finetune")} <= set(COMMANDS)
    assert len(COMMANDS) >= 25, COMMANDS


@pytest.mark.parametrize("command", [(), *COMMANDS], ids=lambda c: " ".join(c) or "avf")
def test_help_of_every_command(command: tuple[str, ...]) -> None:
    """The help names the command's full path and lists each of its subcommands, arguments and options."""
    res = CliRunner().invoke(app, [*command, "--help"])
    assert res.exit_code == 0, res.output
    assert " ".join(("Usage: avf", *command)) in res.output
    missing = sorted(
        word
        for word in _listed_in_help(_resolve(command))
        if not re.search(rf"(?<![\w-]){re.escape(word)}(?![\w-])", res.output)
    )
    assert not missing, f"help of avf {' '.join(command)} does not list {missing}:\n{res.output}"


@pytest.mark.parametrize("stage", sorted(_stage_commands()))
def test_every_dvc_stage_runs_an_existing_command_with_its_options(stage: str) -> None:
    """`dvc repro` calls these command lines: each names a command of the tree, passes only options it
    accepts and every option it requires."""
    argv = _stage_commands()[stage]
    assert argv[0] == "avf", argv
    path = tuple(takewhile(lambda a: not a.startswith("-"), argv[1:]))
    cmd = _resolve(path)
    assert not hasattr(cmd, "commands"), f"{stage}: avf {' '.join(path)} is a group, not a command"
    given = {a.split("=", 1)[0] for a in argv[1 + len(path) :] if a.startswith("-")}
    unknown = sorted({g for g in given if g.startswith("--")} - {o for p in cmd.params for o in p.opts})
    assert not unknown, f"{stage}: avf {' '.join(path)} has no option {unknown}"
    missing = [p.opts[0] for p in cmd.params if p.required and p.opts[0].startswith("-") and not set(p.opts) & given]
    assert not missing, f"{stage}: avf {' '.join(path)} requires {missing}, which the stage does not pass"


def _avf(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run([AVF, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_doctor_reports_a_healthy_setup() -> None:
    res = _avf("doctor")
    assert res.returncode == 0, res.stdout + res.stderr
    out = res.stdout + res.stderr
    assert "healthy" in out and "FAIL" not in out
    for check in ("torch", "mediapipe", "face models", "params", "tracking uri", "ray address", "cpu inference"):
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


def test_predict_summary_gives_a_speed_only_when_some_video_was_read() -> None:
    from avf.cli.predict import run_summary

    out = Path("predictions")
    assert run_summary(1, 1, 0.0, 0.9, out) == "1 video(s), 1 failed, 0.0 s of video in 0.9 s -> predictions"
    assert run_summary(2, 0, 6.0, 1.0, out) == (
        "2 video(s), 0 failed, 6.0 s of video in 1.0 s (0.17 s per video-second) -> predictions"
    )
