"""The served video model: ``avf predict`` behind MLflow's pyfunc (video paths in, one row per video out).

:func:`log_video_model` logs a fine-tuned stage output (or an exported package) as an
:class:`avf.tracking.pyfunc.ServedModel` whose loader is :func:`load_video_model` with the ``predict``
params section of the moment, so the served model predicts what ``avf predict`` writes to ``videos.csv``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

__all__ = ["VIDEO_MODEL_REQUIREMENTS", "load_video_model", "log_video_model", "video_paths"]

# Distributions the video model needs where it is served (pinned to the installed versions at logging
# time); avf itself must be installed there too (``pip install`` of this repository).
VIDEO_MODEL_REQUIREMENTS = (
    "torch",
    "torchaudio",
    "timm",
    "safetensors",
    "numpy",
    "pandas",
    "av",
    "mediapipe",
    "opencv-contrib-python",
    "ai-edge-litert",
    "pydantic",
    "PyYAML",
    "mlflow",
)


def video_paths(model_input: Any) -> list[str]:
    """Paths from a DataFrame with a ``video`` column, a list / array of paths, or a single path."""
    if hasattr(model_input, "columns"):
        if "video" not in model_input.columns:
            raise ValueError(f"expected a 'video' column of file paths, got columns {list(model_input.columns)}")
        return [str(p) for p in model_input["video"]]
    if isinstance(model_input, str | Path):
        return [str(model_input)]
    if isinstance(model_input, Mapping) and "video" in model_input:
        model_input = model_input["video"]
        if isinstance(model_input, str | Path):
            return [str(model_input)]
    return [str(p) for p in model_input]


def load_video_model(model_dir: str, settings: Mapping[str, Any]) -> Callable[[Any], Any]:
    """The served model's predict function: video paths -> the rows of ``avf predict``'s ``videos.csv``."""
    from avf.config.predict import PredictConfig
    from avf.predict.outputs import video_frame
    from avf.predict.predictor import Predictor

    predictor = Predictor.from_uri(model_dir, PredictConfig.model_validate(dict(settings)))

    def predict(model_input: Any) -> Any:
        return video_frame(predictor.predict_paths(video_paths(model_input), progress=False), predictor.spec)

    return predict


def log_video_model(run: Any, model_dir: str | Path, settings: Mapping[str, Any]) -> str | None:
    """Log ``model_dir`` as the served video model of ``run`` (an ``avf.tracking`` run); its ``models:/`` URI.

    None for a run that logs nothing or while the tracking store is unreachable (see
    :func:`avf.tracking.pyfunc.log_served_model`).
    """
    from avf.tracking.pyfunc import log_served_model

    return log_served_model(
        run,
        model_dir,
        functools.partial(load_video_model, settings=dict(settings)),
        inputs={"video": "string"},  # file paths readable where the model runs; outputs depend on the classes
        example={"video": ["talk.mp4"]},  # MLflow's check answers it with a row saying the file is unreadable
        requirements=VIDEO_MODEL_REQUIREMENTS,
    )
