"""The model registry: register logged models, move aliases, and promote ``@candidate`` to ``@champion``."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from avf.tracking.store import mlflow_client, require_reachable, set_global_uri, store_uri
from avf.tracking.tags import current_actor, git


def _missing(exc: Exception) -> bool:
    from mlflow.exceptions import MlflowException

    return isinstance(exc, MlflowException) and exc.error_code in (
        "RESOURCE_DOES_NOT_EXIST",
        "INVALID_PARAMETER_VALUE",
        "NOT_FOUND",
    )


def register(
    model_uri: str,
    name: str,
    tags: Mapping[str, Any] | None = None,
    *,
    alias: str | None = None,
    tracking_uri: str | None = None,
) -> int:
    """Register ``model_uri`` as a new version of ``name`` (created if needed); returns the version.

    The version is tagged with ``dvc.exp_name`` and ``avf.git_commit`` (when known) plus ``tags``.
    """
    import mlflow

    uri = store_uri(tracking_uri)
    require_reachable(uri, "register a model")
    set_global_uri(uri)
    lineage = {"dvc.exp_name": os.environ.get("DVC_EXP_NAME"), "avf.git_commit": git("rev-parse", "HEAD")}
    all_tags = {k: v for k, v in lineage.items() if v} | {k: str(v) for k, v in (tags or {}).items()}
    mv = mlflow.register_model(model_uri, name, tags=all_tags)
    version = int(mv.version)
    if alias:
        set_alias(name, alias, version, tracking_uri=uri)
    return version


def set_alias(name: str, alias: str, version: int, *, tracking_uri: str | None = None) -> None:
    """Point ``name@alias`` at ``version``."""
    mlflow_client(tracking_uri).set_registered_model_alias(name, alias, str(version))


def get_alias_version(name: str, alias: str, *, tracking_uri: str | None = None) -> int | None:
    """The version ``name@alias`` points to, or None (no such alias or model)."""
    try:
        return int(mlflow_client(tracking_uri).get_model_version_by_alias(name, alias).version)
    except Exception as exc:
        if _missing(exc):
            return None
        raise


def version_metric(name: str, version: int, metric: str, *, tracking_uri: str | None = None) -> float | None:
    """A version's ``metric``: from its source run's metrics, else from its version tags."""
    client = mlflow_client(tracking_uri)
    mv = client.get_model_version(name, str(version))
    value: Any = None
    if mv.run_id:
        try:
            value = client.get_run(mv.run_id).data.metrics.get(metric)
        except Exception as exc:
            if not _missing(exc):
                raise
    if value is None:
        value = (mv.tags or {}).get(metric)
    try:
        f = float(value) if value is not None else None
    except (TypeError, ValueError):
        return None
    return None if f is None or math.isnan(f) else f


@dataclass(frozen=True)
class Decision:
    """The outcome of :func:`promote`."""

    promoted: bool
    reason: str
    candidate_version: int | None
    champion_version: int | None  # the champion before the decision
    candidate_value: float | None
    champion_value: float | None
    metric: str = ""


def promote(
    name: str,
    metric: str = "test/uar",
    mode: str = "max",
    candidate_alias: str = "candidate",
    champion_alias: str = "champion",
    *,
    actor: str | None = None,
    note: str | None = None,
    tracking_uri: str | None = None,
) -> Decision:
    """Move ``@champion`` to the ``@candidate`` version if its ``metric`` beats the champion's.

    Strictly better wins (``mode`` max or min); with no champion, or a champion without the
    metric, the candidate wins. The decision (who, when, why) is recorded in the candidate's
    version tags either way; a replaced champion gets ``avf.replaced_by``.
    """
    if mode not in ("max", "min"):
        raise ValueError(f"mode must be 'max' or 'min', got {mode!r}")
    uri = store_uri(tracking_uri)
    require_reachable(uri, "promote a model")
    client = mlflow_client(uri)
    cand = get_alias_version(name, candidate_alias, tracking_uri=uri)
    champ = get_alias_version(name, champion_alias, tracking_uri=uri)
    if cand is None:
        return Decision(False, f"{name} has no @{candidate_alias} version", None, champ, None, None, metric)
    cand_value = version_metric(name, cand, metric, tracking_uri=uri)
    champ_value = version_metric(name, champ, metric, tracking_uri=uri) if champ is not None else None

    def fmt(v: float | None) -> str:
        return "n/a" if v is None else f"{v:.6g}"

    better = ">" if mode == "max" else "<"
    if cand_value is None:
        promoted, reason = False, f"candidate v{cand} has no {metric} (neither run metric nor version tag)"
    elif champ == cand:
        promoted, reason = False, f"v{cand} is already @{champion_alias}"
    elif champ is None:
        promoted, reason = True, f"no @{champion_alias} yet; candidate v{cand} {metric}={fmt(cand_value)}"
    elif champ_value is None:
        promoted, reason = True, f"champion v{champ} has no {metric}; candidate v{cand} {metric}={fmt(cand_value)}"
    elif (cand_value > champ_value) if mode == "max" else (cand_value < champ_value):
        promoted = True
        reason = f"candidate v{cand} {metric}={fmt(cand_value)} {better} champion v{champ} {fmt(champ_value)}"
    else:
        promoted = False
        reason = (
            f"candidate v{cand} {metric}={fmt(cand_value)} does not beat champion v{champ} "
            f"{fmt(champ_value)} (mode {mode})"
        )
    who = actor or current_actor()
    at = datetime.now(UTC).isoformat(timespec="seconds")
    record = {
        "avf.promotion.decision": "promoted" if promoted else "rejected",
        "avf.promotion.reason": reason + (f" | note: {note}" if note else ""),
        "avf.promotion.by": who,
        "avf.promotion.at": at,
        "avf.promotion.metric": f"{metric} ({mode})",
    }
    if promoted:
        client.set_registered_model_alias(name, champion_alias, str(cand))
        if champ is not None:
            record["avf.promotion.previous_champion"] = str(champ)
            client.set_model_version_tag(name, str(champ), "avf.replaced_by", str(cand))
            client.set_model_version_tag(name, str(champ), "avf.replaced_at", at)
    for k, v in record.items():
        client.set_model_version_tag(name, str(cand), k, v)
    return Decision(promoted, reason, cand, champ, cand_value, champ_value, metric)


def list_versions(name: str | None = None, *, tracking_uri: str | None = None) -> list[dict[str, Any]]:
    """Registered versions (all models, or ``name``), newest first per model."""
    client = mlflow_client(tracking_uri)
    names = [name] if name else sorted(m.name for m in client.search_registered_models())
    out: list[dict[str, Any]] = []
    for n in names:
        try:
            versions = client.search_model_versions(f"name = '{n}'")
            alias_map = dict(client.get_registered_model(n).aliases or {})  # search results carry none
        except Exception as exc:
            if _missing(exc):
                continue
            raise
        for mv in sorted(versions, key=lambda v: int(v.version), reverse=True):
            created = datetime.fromtimestamp(mv.creation_timestamp / 1000, UTC)
            out.append(
                {
                    "name": n,
                    "version": int(mv.version),
                    "aliases": sorted(a for a, v in alias_map.items() if int(v) == int(mv.version)),
                    "run_id": mv.run_id,
                    "source": mv.source,
                    "status": mv.status,
                    "created": created.isoformat(timespec="seconds"),
                    "tags": dict(mv.tags or {}),
                }
            )
    return out
