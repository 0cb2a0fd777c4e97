"""``ray``, ``tracking`` and ``ablation`` sections of ``params.yaml``."""

from __future__ import annotations

from pydantic import Field

from avf.config.base import Section


class RayConfig(Section):
    """Ray Train scaling. With no address (and no RAY_ADDRESS) a local cluster is started."""

    address: str | None = None
    num_workers: int = Field(1, ge=0)  # 0: run in this process without Ray
    use_gpu: bool = False
    cpus_per_worker: float = Field(1.0, gt=0)
    gpus_per_worker: float = Field(0.0, ge=0)
    max_failures: int = Field(2, ge=-1)  # worker-failure restarts from the last checkpoint; -1 = forever
    object_store_mb: int = Field(256, ge=64)
    storage_path: str = "runs/ray"  # Ray checkpoints (not DVC outputs)


class TrackingConfig(Section):
    """MLflow tracking. MLFLOW_TRACKING_URI overrides ``uri``."""

    uri: str = "sqlite:///mlruns.db"
    artifact_root: str = "mlartifacts"
    experiment_prefix: str = "avf-mae-pp"
    registered_model: str = "avf-mae-pp-demo"
    promote_metric: str = "test/uar"
    promote_mode: str = Field("max", pattern="^(max|min)$")
    log_system_metrics: bool = False
    # one MLflow run per data stage and dataset (experiment <prefix>/data): counts, timings, failures.csv
    log_data_stages: bool = False


class AblationConfig(Section):
    """A free-form label that tags every MLflow run of an experiment (``avf.ablation``)."""

    name: str = "baseline"
