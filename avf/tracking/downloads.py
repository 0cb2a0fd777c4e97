"""Download a logged model's files from the tracking store."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from avf.tracking.store import require_reachable, set_global_uri, store_uri

MODEL_CACHE_ENV = "AVF_MODEL_CACHE"  # where downloaded models go (default: the system temp dir)


def download_model(uri: str, dst: str | Path | None = None, *, tracking_uri: str | None = None) -> Path:
    """Download a logged model's files (``models:/NAME@alias``, ``models:/NAME/3``, ``models:/m-<id>``,
    ``runs:/<run>/model``) into ``dst`` (default: a new folder under ``$AVF_MODEL_CACHE`` or the temp dir)."""
    import mlflow

    store = store_uri(tracking_uri)
    require_reachable(store, f"download {uri}")
    set_global_uri(store)
    if dst is None:
        cache = os.environ.get(MODEL_CACHE_ENV)
        if cache:
            Path(cache).mkdir(parents=True, exist_ok=True)
        dst = tempfile.mkdtemp(prefix="avf-model-", dir=cache or None)
    return Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(dst), tracking_uri=store))
