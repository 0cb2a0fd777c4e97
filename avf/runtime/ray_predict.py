"""Ray Data batch inference: a pool of actors, each built once, maps batches of rows to Arrow tables in Parquet."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from avf.config import RayConfig
from avf.runtime.cluster import ensure_cluster

__all__ = ["map_batches_to_parquet"]


def map_batches_to_parquet(
    actor: type,
    actor_kwargs: dict[str, Any],
    rows: list[dict[str, Any]],
    out: Path,
    cfg: RayConfig,
    *,
    actors: int,
    batch_size: int,
    cpus_per_actor: float,
    device: str = "cpu",
) -> Path:
    """Write ``actor(**actor_kwargs)(batch)`` over ``rows`` to the Parquet dataset ``out``; returns ``out``.

    ``actor`` is a module-level class (Ray pickles it by reference); each of the ``actors`` instances holds
    ``cpus_per_actor`` CPUs (and one GPU, at most one actor per GPU, when ``device`` is not ``cpu`` and the
    cluster has GPUs; ``cuda``/``cuda:N`` on a cluster without GPUs is an error) and gets numpy batches of
    ``batch_size`` rows; ``actor_kwargs["settings"]["device"]`` is set to what the actor sees. Joins
    ``RAY_ADDRESS`` / ``cfg.address`` or starts a private cluster on 127.0.0.1.
    """
    import ray

    ensure_cluster(cfg)
    cluster_gpus = int(ray.cluster_resources().get("GPU", 0))
    gpus = cluster_gpus > 0 and device != "cpu"
    if device.startswith("cuda") and not cluster_gpus:
        raise ValueError(f"predict.device={device} but the Ray cluster has no GPU")
    if gpus:
        # each actor sees only its own GPU, as cuda:0; at most one actor per GPU
        actor_kwargs = {**actor_kwargs, "settings": {**actor_kwargs["settings"], "device": "cuda"}}
        actors = min(actors, cluster_gpus)
    ds = ray.data.from_items(rows, override_num_blocks=max(1, min(len(rows), actors * 4)))
    if out.exists():
        shutil.rmtree(out)  # write_parquet appends; a rerun replaces the previous result
    # one instance (one model in memory) per actor: ``actors`` bounds both memory and parallelism
    result = ds.map_batches(
        actor,
        fn_constructor_kwargs=actor_kwargs,
        batch_size=batch_size,
        batch_format="numpy",
        concurrency=actors,
        num_cpus=cpus_per_actor,
        num_gpus=1 if gpus else 0,
    )
    result.write_parquet(str(out))
    return out
