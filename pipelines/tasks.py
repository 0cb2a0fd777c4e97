"""Prefect tasks that drive DVC and the ``avf`` CLI as subprocesses (never the stage code itself).

Every command's output is streamed line by line into the run log. DVC owns caching, so no task
caches (``cache_policy=NONE``); only network I/O (``dvc pull/push``, registry calls) retries.
"""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from prefect import task
from prefect.cache_policies import NONE
from prefect.exceptions import MissingContextError
from prefect.logging import get_run_logger
from prefect.runtime import flow_run, task_run

from pipelines.proc import CommandResult, check, child_env, executable, stream_command
from pipelines.summary import ExpRecord, Metrics, RunLink, experiments_from_dvc_show, metrics_from_dvc_show
from pipelines.summary import read_run_links as _read_run_links

AVF_CLI_ENV = "AVF_CLI"  # path of the `avf` executable, if not the one in this venv
DVC_ENV = "AVF_DVC"  # path of the `dvc` executable, if not the one in this venv
IO_RETRIES = 3
IO_RETRY_DELAYS = [10, 60, 180]
_EXP_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")

fallback_log = logging.getLogger("pipelines")


def logger() -> logging.Logger | logging.LoggerAdapter[logging.Logger]:
    """The Prefect run logger inside a flow or task; the ``pipelines`` logger elsewhere."""
    try:
        return get_run_logger()
    except MissingContextError:
        return fallback_log


def dvc_exe() -> str:
    return executable("dvc", DVC_ENV)


def avf_exe() -> str:
    return executable("avf", AVF_CLI_ENV)


def _env(cwd: Path) -> dict[str, str]:
    extra: dict[str, str] = {}
    if run_id := flow_run.get_id():
        extra["PREFECT_FLOW_RUN_ID"] = str(run_id)  # avf.tracking tags MLflow runs with it
    if (cwd / "avf" / "__init__.py").exists():
        # A worker's fresh clone: its stages must run the clone's avf code, not the copy installed in
        # the image (PYTHONPATH comes before site-packages and editable installs on sys.path).
        extra["PYTHONPATH"] = os.pathsep.join(p for p in (str(cwd.resolve()), os.environ.get("PYTHONPATH")) if p)
    return child_env(extra)


def stream(cmd: list[str], cwd: Path) -> CommandResult:
    """Run ``cmd``, logging each output line as it is printed; raise with the tail on failure."""
    log = logger()
    log.info("$ %s   [in %s]", " ".join(cmd), cwd)
    return check(stream_command(cmd, cwd, lambda line: log.info("%s", line), env=_env(cwd)))


def _capture(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=cwd, env=_env(cwd), capture_output=True, text=True, check=False)


def validate_exp_name(name: str) -> str:
    if not _EXP_NAME.match(name) or ".." in name or name.endswith(".lock"):
        raise ValueError(f"invalid experiment name {name!r}: use letters, digits, '.', '_' and '-' (a git ref name)")
    return name


def validate_overrides(overrides: list[str]) -> list[str]:
    """``dvc exp run -S`` values: ``key=value``, ``file.yaml:key=value``, ``~key`` (delete)."""
    for item in overrides:
        if not (("=" in item and not item.startswith("=")) or (item.startswith("~") and len(item) > 1)):
            raise ValueError(f"invalid override {item!r}: expected key=value (as for `dvc exp run -S`)")
    return list(overrides)


def _dvc_task_name() -> str:
    args = task_run.parameters.get("args") or []
    return ("dvc " + " ".join(str(a) for a in args))[:80]


@task(name="dvc", task_run_name=_dvc_task_name, cache_policy=NONE)
def run_dvc(args: list[str], cwd: Path) -> list[str]:
    """``dvc <args>`` in ``cwd`` with live log lines; returns the last output lines."""
    return stream([dvc_exe(), *args], cwd).lines


def exp_run_args(name: str, overrides: list[str], targets: list[str] | None = None) -> list[str]:
    args = ["exp", "run", *(targets or []), "-n", validate_exp_name(name)]
    for item in validate_overrides(overrides):
        args += ["-S", item]
    return args


@task(name="dvc-exp-run", task_run_name="dvc exp run -n {name}", cache_policy=NONE)
def dvc_exp_run(name: str, overrides: list[str], cwd: Path, targets: list[str] | None = None) -> str:
    """``dvc exp run -n NAME -S k=v ...`` in the workspace (results land in the workspace and a ref)."""
    stream([dvc_exe(), *exp_run_args(name, overrides, targets)], cwd)
    return name


def has_dvc_remote(cwd: Path) -> bool:
    out = _capture([dvc_exe(), "remote", "list"], cwd)
    return out.returncode == 0 and bool(out.stdout.strip())


def has_git_remote(cwd: Path, remote: str) -> bool:
    out = _capture(["git", "remote"], cwd)
    return out.returncode == 0 and remote in out.stdout.split()


@task(name="dvc-pull", cache_policy=NONE, retries=IO_RETRIES, retry_delay_seconds=IO_RETRY_DELAYS)
def dvc_pull(cwd: Path) -> bool:
    """``dvc pull --allow-missing`` (outputs not pushed yet are rebuilt); skipped without a remote."""
    if not has_dvc_remote(cwd):
        logger().info("no DVC remote configured: skipping dvc pull")
        return False
    stream([dvc_exe(), "pull", "--allow-missing"], cwd)
    return True


@task(name="dvc-push", cache_policy=NONE, retries=IO_RETRIES, retry_delay_seconds=IO_RETRY_DELAYS)
def dvc_push(cwd: Path, exp_name: str | None = None, git_remote: str = "origin") -> bool:
    """Share results: ``dvc exp push`` for an experiment (git ref + data), else ``dvc push``.

    Skipped (logged) when there is nowhere to push to.
    """
    dvc_remote = has_dvc_remote(cwd)
    if exp_name and has_git_remote(cwd, git_remote):
        stream([dvc_exe(), "exp", "push", git_remote, exp_name, *([] if dvc_remote else ["--no-cache"])], cwd)
        return True
    if dvc_remote:
        stream([dvc_exe(), "push"], cwd)
        return True
    logger().info("no DVC remote%s configured: skipping push", f" or git remote {git_remote!r}" if exp_name else "")
    return False


@task(name="read-metrics", cache_policy=NONE)
def read_metrics(cwd: Path) -> Metrics:
    """The workspace metrics from ``dvc metrics show --json`` ({} with a warning if DVC cannot tell)."""
    out = _capture([dvc_exe(), "metrics", "show", "--json"], cwd)
    if out.returncode != 0:
        logger().warning("dvc metrics show failed (%s): %s", out.returncode, out.stderr.strip()[-500:])
        return {}
    return metrics_from_dvc_show(json.loads(out.stdout or "{}"))


@task(name="read-experiments", cache_policy=NONE)
def read_experiments(cwd: Path) -> dict[str, ExpRecord]:
    """Every experiment in ``dvc exp show --json``, by name."""
    out = _capture([dvc_exe(), "exp", "show", "--json"], cwd)
    if out.returncode != 0:
        logger().warning("dvc exp show failed (%s): %s", out.returncode, out.stderr.strip()[-500:])
        return {}
    return experiments_from_dvc_show(json.loads(out.stdout or "[]"))


@task(name="mlflow-links", cache_policy=NONE)
def mlflow_links(cwd: Path) -> list[RunLink]:
    """The stages' MLflow runs (``reports/*/mlflow_run.json``) with UI links for http(s) servers."""
    return _read_run_links(cwd)


def avf_has_command(cwd: Path, *words: str) -> bool:
    """Whether ``avf <words...> --help`` exists in the installed CLI."""
    try:
        out = _capture([avf_exe(), *words, "--help"], cwd)
    except FileNotFoundError:
        return False
    return out.returncode == 0


@task(name="avf-registry-promote", cache_policy=NONE, retries=2, retry_delay_seconds=[15, 60])
def registry_promote(cwd: Path, model_name: str | None = None) -> dict[str, Any]:
    """``avf registry promote [NAME]``: move @champion to @candidate if it is better; the decision."""
    with tempfile.TemporaryDirectory(prefix="avf-promote-") as tmp:
        decision_file = Path(tmp) / "decision.json"
        cmd = [avf_exe(), "registry", "promote", *([model_name] if model_name else []), "--out", str(decision_file)]
        result = stream(cmd, cwd)
        decision: dict[str, Any] = json.loads(decision_file.read_text()) if decision_file.exists() else {}
    decision.setdefault("message", result.lines[-1] if result.lines else "")
    return decision


@task(name="avf-report-ablations", cache_policy=NONE)
def report_ablations(cwd: Path, names: list[str], baseline: str, out_dir: str) -> str | None:
    """``avf report ablations --baseline B --out DIR [NAMES...]``; None (logged) if the CLI lacks it."""
    if not avf_has_command(cwd, "report", "ablations"):
        logger().warning(
            "`avf report ablations` is not available in this avf install: skipping the comparison report "
            "(the metric table in this run's artifact still compares the experiments)"
        )
        return None
    usage = _capture([avf_exe(), "report", "ablations", "--help"], cwd).stdout
    takes_names = bool(re.search(r"Usage:.*ablations \[OPTIONS\] \[?[A-Za-z]", usage))
    cmd = [avf_exe(), "report", "ablations", "--baseline", baseline, "--out", out_dir]
    stream([*cmd, *(names if takes_names else [])], cwd)
    return out_dir
