"""A served model: an MLflow pyfunc whose behaviour comes from a loader function the caller passes in.

``ServedModel(load)`` pickles ``load`` by reference (a module-level function, or a ``functools.partial`` of
one with plain settings), so MLflow rebuilds the model from the installed package when it loads it, and the
tracking package never imports what it serves (``avf.predict.serving`` passes its own loader).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import mlflow.pyfunc
import pandas as pd
from mlflow.models import ModelSignature
from mlflow.types import ColSpec, Schema

from avf.tracking.runs import NullRun, Run
from avf.tracking.store import TrackingAuthError, TrackingUnavailableError

__all__ = ["MODEL_DIR", "ServedModel", "log_served_model", "pinned"]

log = logging.getLogger(__name__)

MODEL_DIR = "model_dir"  # the artifact holding the served folder (a stage output or an exported package)

# MLflow hands the served model a table with the columns of its signature; the answer is a table too
Predict = Callable[[pd.DataFrame], pd.DataFrame]


class ServedModel(mlflow.pyfunc.PythonModel):  # type: ignore[misc]
    """MLflow pyfunc over ``load(model_dir) -> predict``; ``predict(model_input)`` answers every request."""

    def __init__(self, load: Callable[[str], Predict]) -> None:
        self.load = load
        self._predict: Predict | None = None

    def load_context(self, context: Any) -> None:
        self._predict = self.load(context.artifacts[MODEL_DIR])

    def predict(
        self, context: mlflow.pyfunc.PythonModelContext, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> pd.DataFrame:
        if self._predict is None:
            raise RuntimeError("the served model was not loaded (mlflow.pyfunc.load_model loads it)")
        return self._predict(model_input)


def pinned(names: Sequence[str]) -> list[str]:
    """``name==installed version`` for each distribution (the bare name when it is not installed)."""
    out = []
    for n in names:
        try:
            out.append(f"{n}=={version(n)}")
        except PackageNotFoundError:
            out.append(n)
    return out


def log_served_model(
    run: Run,
    model_dir: str | Path,
    load: Callable[[str], Predict],
    *,
    inputs: Mapping[str, str],
    example: Mapping[str, Sequence[Any]],
    requirements: Sequence[str],
) -> str | None:
    """Log ``model_dir`` as a :class:`ServedModel` of ``run``; returns its ``models:/`` URI.

    ``inputs`` is the input signature (column -> MLflow type), ``example`` an input of it (column -> values)
    that MLflow keeps as the model's input example and tries at logging; ``requirements`` the distributions
    the model needs where it is served (pinned to the installed versions). Returns None for a
    :class:`NullRun` or when the tracking store is unreachable (a warning: the DVC output stays valid and
    the model can be logged again later); refused credentials raise :class:`TrackingAuthError`.
    """
    if isinstance(run, NullRun):
        return None
    signature = ModelSignature(inputs=Schema([ColSpec(kind, name) for name, kind in inputs.items()]))  # type: ignore[arg-type]
    try:
        return run.log_model(
            ServedModel(load),
            artifacts={MODEL_DIR: str(model_dir)},
            name="model",
            signature=signature,
            input_example=pd.DataFrame({k: list(v) for k, v in example.items()}),
            pip_requirements=pinned(requirements),
        )
    except TrackingAuthError:
        raise
    except TrackingUnavailableError as exc:
        log.warning("model not logged to MLflow: %s", exc)
        return None
