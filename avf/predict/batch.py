"""``avf predict --ray``: the same :class:`~avf.predict.Predictor` as a Ray Data ``map_batches`` job.

The input is a list of video paths (a folder, glob or manifest expanded by the caller); a pool of
``predict.ray_actors`` actors (``predict.ray_cpus_per_actor`` CPUs each) loads the model once each
and predicts ``predict.ray_batch_size`` videos per call. The output is a Parquet dataset with one
row per video (the flat whole-video columns of ``videos.csv``) and the per-window rows nested in a
``windows`` list column, under a fixed Arrow schema (``avf.predict.outputs.arrow_table``).
An MLflow URI is downloaded once by the driver; actors load the local copy.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from avf.config import Params
from avf.config.data import DataConfig
from avf.config.predict import PredictConfig
from avf.predict.heads import DatasetHead

__all__ = ["PredictActor", "run_ray_job"]

log = logging.getLogger(__name__)


class PredictActor:
    """Ray Data callable class: one Predictor per actor, a batch of paths in, an Arrow table out."""

    def __init__(
        self,
        model: str,
        settings: dict[str, Any],
        data: dict[str, Any],
        card: dict[str, Any] | None,
        head: DatasetHead | None = None,
    ) -> None:
        from avf.predict.predictor import Predictor

        self.predictor = Predictor.from_uri(
            model,
            PredictConfig.model_validate(settings),
            card=card,
            data=DataConfig.model_validate(data),
            head=head,
        )

    def __call__(self, batch: dict[str, Any]) -> Any:
        from avf.predict.outputs import arrow_table

        paths = [str(p) for p in batch["video"]]
        ids = [str(i) for i in batch["video_id"]]
        preds = list(self.predictor.predict_paths(paths, progress=False))
        return arrow_table(preds, self.predictor.spec, ids)


def run_ray_job(
    model: str,
    paths: Sequence[str | Path],
    out_dir: str | Path,
    params: Params,
    card: dict[str, Any] | None = None,
    head: DatasetHead | None = None,
) -> Path:
    """Predict ``paths`` on Ray (local cluster unless ``ray.address`` / ``RAY_ADDRESS``); returns the Parquet dir."""
    from avf.predict.outputs import video_ids
    from avf.runtime.ray_predict import map_batches_to_parquet

    if model.startswith(("models:/", "runs:/")):
        from avf import tracking

        model = str(tracking.download_model(model))
    s = params.predict
    items = [{"video": str(p), "video_id": i} for p, i in zip(paths, video_ids(list(paths)), strict=True)]
    import torch

    # a private local cluster offers this machine's GPUs unless prediction is to run on the CPU
    local_gpus = s.device != "cpu" and torch.cuda.is_available()
    ray_cfg = params.ray.model_copy(update={"use_gpu": params.ray.use_gpu or local_gpus})
    out = map_batches_to_parquet(
        PredictActor,
        {
            "model": model,
            # one thread per actor unless set: the actors share the node's CPUs
            "settings": s.model_copy(update={"prefetch": 0, "threads": s.threads or 1}).model_dump(mode="json"),
            "data": params.data.model_dump(mode="json"),
            "card": card,
            "head": head,
        },
        items,
        Path(out_dir) / "predictions.parquet",
        ray_cfg,
        actors=s.ray_actors,
        batch_size=s.ray_batch_size,
        cpus_per_actor=s.ray_cpus_per_actor,
        device=s.device,
    )
    log.info("predictions of %d videos written to %s", len(items), out)
    return out
