"""The orchestration flows: each one runs DVC (and the ``avf`` CLI) and publishes a summary artifact.

All DVC commands of a flow run one after another: DVC holds a lock per workspace, so two ``repro``
runs in one checkout would fail. Stage logic lives in ``avf``; these flows only decide what to run.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from prefect import flow
from prefect.artifacts import create_markdown_artifact
from prefect.runtime import flow_run

from pipelines import summary
from pipelines.tasks import (
    dvc_exp_run,
    dvc_pull,
    dvc_push,
    logger,
    mlflow_links,
    read_experiments,
    read_metrics,
    registry_promote,
    report_ablations,
    run_dvc,
    validate_exp_name,
    validate_overrides,
)

INGEST_TARGETS = ["shards"]  # the foreach group: shards@<dataset> for every dataset, plus upstream stages
NIGHTLY_TARGETS = ["evaluate", "register"]  # register sets @candidate, which promote then judges


def _stamp() -> str:
    return datetime.now(UTC).strftime("%Y%m%d-%H%M%S")


def _full_pipeline_run_name() -> str:
    params = flow_run.parameters
    return f"full-pipeline/{params.get('exp_name') or ('exp' if params.get('overrides') else 'repro')}-{_stamp()}"


def _stamped(prefix: str) -> Callable[[], str]:
    def name() -> str:
        return f"{prefix}/{_stamp()}"

    return name


def _ablation_run_name() -> str:
    params = flow_run.parameters
    return f"ablation-batch/{len(params.get('experiments') or {})}-exps-vs-{params.get('baseline')}-{_stamp()}"


def _project(project_dir: str) -> Path:
    path = Path(project_dir).expanduser().resolve()
    if not (path / "dvc.yaml").exists():
        raise FileNotFoundError(f"{path} has no dvc.yaml: project_dir must be the DVC project root")
    return path


def _publish(key: str, title: str, sections: dict[str, str]) -> None:
    body = [f"# {title}", f"_{datetime.now(UTC):%Y-%m-%d %H:%M} UTC_"]
    body += [f"## {heading}\n\n{text}" for heading, text in sections.items()]
    create_markdown_artifact(markdown="\n\n".join(body), key=key, description=title)


@flow(name="full-pipeline", flow_run_name=_full_pipeline_run_name, log_prints=True)
def full_pipeline(
    exp_name: str | None = None,
    overrides: list[str] | None = None,
    targets: list[str] | None = None,
    project_dir: str = ".",
    push: bool = True,
) -> dict[str, Any]:
    """``dvc repro`` (no name, no overrides) or ``dvc exp run -n EXP_NAME -S k=v ...``; then push and summarise.

    ``targets`` limits the run to those stages (and what they depend on).
    """
    cwd = _project(project_dir)
    overrides = validate_overrides(overrides or [])
    as_exp = bool(exp_name or overrides)
    name = validate_exp_name(exp_name or f"prefect-{_stamp()}") if as_exp else None
    dvc_pull(cwd)
    if name is not None:
        dvc_exp_run(name, overrides, cwd, targets)
        command = " ".join(["dvc exp run", *(targets or []), "-n", name, *(f"-S {o}" for o in overrides)])
    else:
        run_dvc(["repro", *(targets or [])], cwd)
        command = " ".join(["dvc repro", *(targets or [])])
    metrics = read_metrics(cwd)
    links = mlflow_links(cwd)
    if push:
        dvc_push(cwd, exp_name=name)
    _publish(
        "full-pipeline",
        f"full-pipeline: {name or 'workspace'}",
        {
            "Command": f"`{command}` in `{cwd}`",
            "Metrics": summary.metrics_table(metrics),
            "MLflow runs": summary.links_table(links),
        },
    )
    return {"exp_name": name, "metrics": metrics, "mlflow_runs": [link.url or link.run_id for link in links]}


@flow(name="ingest", flow_run_name=_stamped("ingest"), log_prints=True)
def ingest(
    project_dir: str = ".",
    targets: list[str] | None = None,
    add: list[str] | None = None,
    push: bool = True,
) -> dict[str, Any]:
    """New raw videos -> shards: ``dvc repro shards`` (faces, audio, manifest and shards per dataset).

    ``add`` lists raw folders tracked with ``dvc add`` that received new files; they are re-added
    first so their new hashes reach the stages. Training stages are not run.
    """
    cwd = _project(project_dir)
    dvc_pull(cwd)
    if add:
        run_dvc(["add", *add], cwd)
    stages = targets or INGEST_TARGETS
    run_dvc(["repro", *stages], cwd)
    metrics = read_metrics(cwd)
    links = mlflow_links(cwd)
    if push:
        dvc_push(cwd)
    _publish(
        "ingest",
        "ingest: raw videos -> shards",
        {
            "Command": f"`dvc repro {' '.join(stages)}` in `{cwd}`",
            "Metrics": summary.metrics_table(metrics),
            "MLflow runs": summary.links_table(links),
        },
    )
    return {"targets": stages, "metrics": metrics}


@flow(name="nightly-eval", flow_run_name=_stamped("nightly-eval"), log_prints=True)
def nightly_eval(
    project_dir: str = ".",
    model_name: str | None = None,
    targets: list[str] | None = None,
    require_promotion: bool = False,
) -> dict[str, Any]:
    """``dvc repro evaluate register`` then ``avf registry promote``: @champion moves only if @candidate is better.

    The decision (and why) goes to the log and the artifact. ``require_promotion`` fails the run
    when the candidate is not promoted.
    """
    cwd = _project(project_dir)
    dvc_pull(cwd)
    stages = targets or NIGHTLY_TARGETS
    run_dvc(["repro", *stages], cwd)
    metrics = read_metrics(cwd)
    links = mlflow_links(cwd)
    decision = registry_promote(cwd, model_name)
    verdict = "promoted" if decision.get("promoted") else "not promoted"
    print(f"registry decision: {verdict}: {decision.get('reason') or decision.get('message')}")
    _publish(
        "nightly-eval",
        f"nightly-eval: {decision.get('name') or model_name or 'model'} {verdict}",
        {
            "Decision": f"**{verdict}**: {decision.get('reason') or decision.get('message') or ''}",
            "Metrics": summary.metrics_table(metrics),
            "MLflow runs": summary.links_table(links),
        },
    )
    if require_promotion and not decision.get("promoted"):
        raise RuntimeError(f"candidate not promoted: {decision.get('reason') or decision.get('message')}")
    return {"decision": decision, "metrics": metrics}


def _has_param(params_file: Path, dotted: str) -> bool:
    try:
        node: Any = yaml.safe_load(params_file.read_text())
    except (OSError, yaml.YAMLError):
        return False
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


def _with_name_param(name: str, overrides: list[str], name_param: str | None, cwd: Path) -> list[str]:
    """Add ``name_param=name`` (e.g. ``ablation.name``, which tags the MLflow runs) unless already set."""
    if not name_param or any(o.split("=", 1)[0] == name_param for o in overrides):
        return overrides
    return [*overrides, f"{name_param}={name}"] if _has_param(cwd / "params.yaml", name_param) else overrides


def _params_files(cwd: Path, overrides: list[str]) -> list[Path]:
    """params.yaml plus every ``file:key=value`` target of the overrides (what ``-S`` rewrites)."""
    files = {cwd / "params.yaml"}
    for item in overrides:
        key = item.split("=", 1)[0].lstrip("~")
        if ":" in key:
            files.add(cwd / key.split(":", 1)[0])
    return sorted(p for p in files if p.exists())


@flow(name="ablation-batch", flow_run_name=_ablation_run_name, log_prints=True)
def ablation_batch(
    experiments: dict[str, list[str]],
    baseline: str = "baseline",
    project_dir: str = ".",
    targets: list[str] | None = None,
    report_dir: str = "reports/ablations",
    name_param: str | None = "ablation.name",
) -> dict[str, Any]:
    """One ``dvc exp run -n NAME -S ...`` per entry, one at a time, then ``avf report ablations``.

    Each experiment starts from the params the workspace had when the batch began (``-S`` values of
    the previous experiment are not carried over); the baseline, if listed, runs last so that the
    workspace ends on it. A failed experiment does not stop the others; the run fails at the end.
    ``name_param`` (when params.yaml has it) is set to each experiment's name, so that its MLflow runs
    are tagged with it.
    """
    cwd = _project(project_dir)
    if not experiments:
        raise ValueError("experiments is empty: give {name: [key=value, ...]}")
    for name, overrides in experiments.items():
        validate_exp_name(name)
        validate_overrides(overrides)
    order = [n for n in experiments if n != baseline] + ([baseline] if baseline in experiments else [])
    files = _params_files(cwd, [o for ov in experiments.values() for o in ov])
    snapshot = {p: p.read_bytes() for p in files}
    log = logger()
    dvc_pull(cwd)
    failed: list[str] = []
    links: dict[str, list[summary.RunLink]] = {}
    for name in order:
        for path, content in snapshot.items():  # undo the previous experiment's -S edits
            path.write_bytes(content)
        overrides = _with_name_param(name, experiments[name], name_param, cwd)
        state = dvc_exp_run(name, overrides, cwd, targets, return_state=True)
        if state.is_completed():
            links[name] = mlflow_links(cwd)
            dvc_push(cwd, exp_name=name)
        else:
            log.error("experiment %s failed: %s", name, state.message)
            failed.append(name)
    exps = read_experiments(cwd)
    compared = [n for n in [baseline, *order] if n in exps and n not in failed]
    compared = list(dict.fromkeys(compared))
    if baseline not in exps:
        log.warning("baseline %r is not a DVC experiment here: deltas are not shown", baseline)
    report = report_ablations(cwd, compared, baseline, report_dir) if compared else None
    _publish(
        "ablation-batch",
        f"ablation-batch: {len(order)} experiments vs {baseline}",
        {
            "Experiments": "\n".join(
                f"- `{n}`: {' '.join(f'-S {o}' for o in experiments[n]) or '(no overrides)'}"
                + (" **FAILED**" if n in failed else "")
                for n in order
            ),
            "Metrics (delta vs baseline)": summary.ablation_table(exps, compared, baseline),
            "Parameters that differ": summary.changed_params(exps, compared),
            "MLflow runs": "\n\n".join(f"### {n}\n\n{summary.links_table(ls)}" for n, ls in links.items()) or "_none_",
            "Report": f"`{report}`" if report else "_not written (see the run log)_",
        },
    )
    if failed:
        raise RuntimeError(f"{len(failed)} of {len(order)} experiments failed: {', '.join(failed)}")
    return {"experiments": compared, "report": report}
