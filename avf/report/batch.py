"""An ablation batch as a file: arms of ``params.yaml`` overrides, run over folds and seeds as DVC experiments.

Each arm x fold x seed is one experiment named ``<arm>-f<fold>-s<seed>``; :func:`queue` puts them in DVC's
own queue (``dvc exp run --queue``) and ``dvc queue start -j N`` runs them; ``avf report compare --batch``
reads the same file to pair the arms. Every experiment's overrides are validated against ``params.yaml``
before anything is queued, so a typo fails at once instead of after hours.
"""

from __future__ import annotations

import copy
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from avf.config import parse_params
from avf.report.ablations import dvc_executable, load_experiments


class Arm(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    set: tuple[str, ...] = ()  # KEY=VALUE overrides of params.yaml (dvc exp run -S)
    seeds: tuple[int, ...] | None = None  # default: the batch's seeds


class Batch(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    target: str | None = None  # the DVC stage to reproduce up to (default: the whole pipeline)
    folds: tuple[int, ...] = Field(min_length=1)
    seeds: tuple[int, ...] = Field((0,), min_length=1)
    arms: dict[str, Arm] = Field(min_length=2)  # the first arm is the baseline of the comparison


def load_batch(path: Path) -> Batch:
    try:
        return Batch.model_validate(yaml.safe_load(path.read_text()) or {})
    except (ValidationError, yaml.YAMLError) as e:
        raise ValueError(f"{path}: {e}") from None


def experiments(batch: Batch) -> dict[str, dict[str, list[str]]]:
    """``arm -> experiment name -> overrides``; the fold, seed and ``ablation.name`` are set for every one."""
    out: dict[str, dict[str, list[str]]] = {}
    for name, arm in batch.arms.items():
        out[name] = {
            f"{name}-f{fold}-s{seed}": [
                *arm.set,
                f"data.split.fold={fold}",
                f"seed={seed}",
                f"ablation.name={name}",
            ]
            for fold in batch.folds
            for seed in arm.seeds or batch.seeds
        }
    return out


def arms(batch: Batch) -> dict[str, list[str]]:
    """``arm -> experiment names``, the form ``avf report compare`` pairs."""
    return {arm: list(exps) for arm, exps in experiments(batch).items()}


def pick_arms(batch: Batch, only: Sequence[str] | None) -> Batch:
    """The batch restricted to the arms ``only`` (all when None), in the batch's order."""
    if not only:
        return batch
    unknown = sorted(set(only) - set(batch.arms))
    if unknown:
        raise ValueError(f"unknown arms {unknown}; the batch has {list(batch.arms)}")
    return batch.model_copy(update={"arms": {a: arm for a, arm in batch.arms.items() if a in only}})


def split_arms(text: str | None) -> list[str] | None:
    """Arm names from a comma-separated option (None when not given)."""
    return [a.strip() for a in text.split(",") if a.strip()] if text else None


def arms_of_batch(batch: Batch, only: str | None = None) -> dict[str, list[str]]:
    """:func:`arms` of the comma-separated arms ``only`` (all when None; the first is the baseline)."""
    return arms(pick_arms(batch, split_arms(only)))


def _apply(raw: dict[str, Any], override: str) -> None:
    """Apply one ``-S`` override as DVC does (Hydra's override grammar), to existing keys only."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    if "=" not in override or override.startswith(("+", "~")):
        raise ValueError(f"override {override!r}: expected KEY=VALUE of an existing key")
    try:
        (parsed,) = OverridesParser.create().parse_overrides([override])
    except HydraException as e:
        raise ValueError(f"override {override!r}: {e}") from None
    if parsed.is_sweep_override():
        raise ValueError(f"override {override!r} is a sweep: list each value as its own arm, fold or seed")
    key, value = parsed.key_or_group, parsed.value()
    *parents, leaf = key.split(".")
    node = raw
    for part in parents:
        if not isinstance(node.get(part), dict):
            raise ValueError(f"override {override!r}: params.yaml has no section {key.rsplit('.', 1)[0]!r}")
        node = node[part]
    if leaf not in node:
        raise ValueError(f"override {override!r}: params.yaml has no key {key!r}")
    node[leaf] = value


def validate(batch: Batch, params_file: Path) -> None:
    """Every experiment's params (``params.yaml`` + its overrides) must validate."""
    base = yaml.safe_load(params_file.read_text())
    for exps in experiments(batch).values():
        for name, overrides in exps.items():
            raw = copy.deepcopy(base)
            try:
                for o in overrides:
                    _apply(raw, o)
                parse_params(raw, f"{params_file} with these overrides")
            except ValueError as e:
                raise ValueError(f"experiment {name}: {e}") from None


def queue_order(batch: Batch) -> list[str]:
    """Experiment names in queue order: the first fold of every arm (each seed), then the other folds."""
    names = experiments(batch)
    first = [n for arm in names for n in list(names[arm])[: len(batch.arms[arm].seeds or batch.seeds)]]
    return first + [n for arm in names for n in names[arm] if n not in first]


def queue(
    project: Path,
    batch: Batch,
    on_queued: Callable[[str, bool], None] | None = None,
    only: Sequence[str] | None = None,
) -> list[str]:
    """Queue every experiment not already present (by name) in ``dvc exp show``; returns the queued names.

    Already finished experiments of the current commit are kept, so a batch can be extended or re-queued
    after a failure. The first fold of every arm is queued first: those experiments train the upstream
    stages each arm needs, so that its other folds find them in DVC's run-cache instead of training them
    again side by side. ``only`` queues those arms alone (the others can follow in a later call).
    """
    batch = pick_arms(batch, only)
    validate(batch, project / "params.yaml")
    existing = {e.name for e in load_experiments(project)}
    overrides = {n: o for exps in experiments(batch).values() for n, o in exps.items()}
    queued = []
    for name in queue_order(batch):
        if name in existing:
            if on_queued:
                on_queued(name, False)
            continue
        cmd = [dvc_executable(), "exp", "run", "--queue", "-n", name]
        for o in overrides[name]:
            cmd += ["-S", o]
        cmd += [batch.target] if batch.target else []
        out = subprocess.run(cmd, cwd=project, capture_output=True, text=True)
        if out.returncode != 0:
            raise RuntimeError(f"dvc exp run --queue -n {name} failed: {out.stderr.strip() or out.stdout.strip()}")
        queued.append(name)
        if on_queued:
            on_queued(name, True)
    return queued
