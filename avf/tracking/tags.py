"""Names, tags and params of a stage run: what links an MLflow run to DVC, git, Prefect and the ablation.

Experiments are ``<prefix>/<stage>`` (``<prefix>/finetune-<dataset>`` for fine-tuning), run names
``<stage>-<dvc exp name | git short sha>``.
"""

from __future__ import annotations

import getpass
import json
import os
import subprocess
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from avf.config import Params

PARENT_RUN_ENV = "AVF_PARENT_RUN_ID"  # set by Prefect flows: stage runs become its children
MAX_PARAM_LEN = 6000
MAX_TAG_LEN = 8000


def git(*args: str) -> str | None:
    """``git <args>``'s stripped output; None when git fails or prints nothing."""
    try:
        out = subprocess.run(["git", *args], capture_output=True, text=True, timeout=10, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def current_actor() -> str:
    """Who acts: ``$AVF_ACTOR``, else the login name."""
    if who := os.environ.get("AVF_ACTOR"):
        return who
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def experiment_name(params: Params, stage: str, dataset: str | None = None) -> str:
    """``<prefix>/<stage>``, or ``<prefix>/finetune-<dataset>`` for fine-tuning on one dataset."""
    prefix = params.tracking.experiment_prefix
    if dataset and stage == "finetune":
        return f"{prefix}/finetune-{dataset}"
    return f"{prefix}/{stage}"


def default_run_name(stage: str, tags: Mapping[str, str]) -> str:
    """``<stage>-<dvc exp name | git short sha | local>`` from a run's tags."""
    suffix = tags.get("dvc.exp_name") or (tags.get("avf.git_commit") or "")[:7] or "local"
    return f"{stage}-{suffix}"


def param_value(v: Any) -> str:
    """A param as MLflow stores it: strings as they are, the rest as JSON, cut to MLflow's length limit."""
    s = v if isinstance(v, str) else json.dumps(v, sort_keys=True)
    return s if len(s) <= MAX_PARAM_LEN else s[: MAX_PARAM_LEN - 3] + "..."


def flatten_params(params: Params, sections: Sequence[str]) -> dict[str, str]:
    """The resolved values of ``sections`` as dotted keys (``pretrain.optim.lr``), plus ``seed``."""
    from avf.config import section_values

    out: dict[str, str] = {"seed": str(params.seed)}

    def walk(prefix: str, obj: Any) -> None:
        if isinstance(obj, dict) and obj:
            for k, v in obj.items():
                walk(f"{prefix}.{k}", v)
        else:
            out[prefix] = param_value(obj)

    for s in sections:
        walk(s, section_values(params, s))
    return out


def run_tags(params: Params, stage: str, sections: Sequence[str], dataset: str | None = None) -> dict[str, str]:
    """The tags every new stage run gets."""
    from avf.config import section_hash

    commit = git("rev-parse", "HEAD")
    tags: dict[str, str] = {
        "avf.stage": stage,
        "avf.ablation": params.ablation.name,
        "avf.variant": f"avf_mae_pp_{params.model.size}",
        "avf.params_hash": section_hash(params, *sections),
        "avf.sections": ",".join(sections),
        "mlflow.source.type": "LOCAL",
        "mlflow.user": current_actor(),
    }
    if dataset:
        tags["avf.dataset"] = dataset
    if "ray" in sections:
        tags["ray.num_workers"] = str(params.ray.num_workers)
    if exp := os.environ.get("DVC_EXP_NAME"):
        tags["dvc.exp_name"] = exp
    if commit:
        tags["mlflow.source.git.commit"] = commit
        tags["avf.git_commit"] = commit
        tags["avf.git_dirty"] = str(bool(git("status", "--porcelain", "--untracked-files=no")))
    if flow_run := os.environ.get("PREFECT__FLOW_RUN_ID") or os.environ.get("PREFECT_FLOW_RUN_ID"):
        tags["prefect.flow_run_id"] = flow_run
    if parent := os.environ.get(PARENT_RUN_ENV):
        tags["mlflow.parentRunId"] = parent
    return tags
