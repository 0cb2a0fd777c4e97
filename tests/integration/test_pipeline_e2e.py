"""The whole product on a fresh clone: `dvc repro` end to end with test-size params, then the checks a
user would make: every stage's outputs, MLflow runs per stage with metrics, the registered model with
its alias, a no-op second `dvc repro`, one `dvc exp run -S` ablation of stage 3 and `avf report ablations`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]

BIN = Path(sys.executable).parent

# Small enough for a loaded 2-core machine; the same stages and file layouts as the demo.
TEST_PARAMS = {
    "data": {
        "synth": {
            "ravdess_actors": 8,
            "emotions": [1, 3, 4, 5],
            "cremad_actors": 2,
            "cremad_emotions": ["ANG", "HAP", "NEU", "SAD"],
            "cremad_sentences": ["DFA"],
            "duration_s": 2.0,
        },
        "split": {"val_subjects": 1},  # 2 CREMA-D-style actors: one for training, one for validation
        "shards": {"max_shard_count": 4},
        "augment": {"rand_augment": ""},
    },
    "pretrain": {"epochs": 1, "batch_size": 4, "base_lr": 0.05, "log_every": 1},
    "intermediate": {"epochs": 1, "batch_size": 4, "base_lr": 0.05, "log_every": 1},
    "finetune": {"epochs": 1, "batch_size": 4, "base_lr": 0.05, "log_every": 1},
    # In-process training: the same stage functions and loop. A real stage on the demo's private Ray cluster
    # (`ray.num_workers: 1`), stopped and resumed to the end, is tests/reliability/test_interruption.py's.
    "ray": {"num_workers": 0},
}


def _merge(base: dict, extra: dict) -> dict:
    out = dict(base)
    for k, v in extra.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _run(cwd: Path, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise AssertionError(
            f"{' '.join(args)} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
        )
    return proc


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory, project_root: Path) -> tuple[Path, dict[str, str]]:
    clone = tmp_path_factory.mktemp("e2e") / "avf"
    subprocess.run(["git", "clone", "-q", str(project_root), str(clone)], check=True)
    for name in ("user.email", "user.name"):
        subprocess.run(["git", "config", name, "e2e@example.com"], cwd=clone, check=True)
    # What `make setup` adds beside the clone: the face model files (git-ignored, extracted from a wheel).
    shutil.copytree(project_root / "models" / "assets", clone / "models" / "assets", dirs_exist_ok=True)
    params = yaml.safe_load((clone / "params.yaml").read_text())
    (clone / "params.yaml").write_text(yaml.safe_dump(_merge(params, TEST_PARAMS), sort_keys=False))
    subprocess.run(["git", "commit", "-qam", "test-size params"], cwd=clone, check=True)
    env = {
        **os.environ,
        "PATH": f"{BIN}:{os.environ['PATH']}",
        "MLFLOW_TRACKING_URI": f"sqlite:///{clone}/mlruns.db",
        "AVF_MLFLOW_BUFFER_DIR": str(clone / "runs" / "mlflow-buffer"),
    }
    env.pop("DVC_EXP_NAME", None)
    _run(clone, "dvc", "repro", env=env)
    return clone, env


def test_every_stage_produced_its_outputs(project: tuple[Path, dict[str, str]]) -> None:
    clone, _ = project
    for ds in ("ravdess", "cremad"):
        assert (clone / "data" / "manifest" / f"{ds}.parquet").is_file()
        assert json.loads((clone / "data" / "shards" / ds / "index.json").read_text())["num_samples"] > 0
        assert json.loads((clone / "reports" / "data" / "faces" / ds / "summary.json").read_text())
    for stage in ("pretrain", "intermediate", "finetune"):
        assert (clone / "models" / stage / "model.safetensors").stat().st_size > 100_000
        card = json.loads((clone / "models" / stage / "card.json").read_text())
        assert card["stage"] == stage
        assert (clone / "reports" / stage / "curve.csv").is_file()
    assert (clone / "reports" / "pretrain" / "reconstruction.png").stat().st_size > 10_000
    metrics = json.loads((clone / "reports" / "eval" / "metrics.json").read_text())
    assert metrics["dataset"] == "ravdess" and 0 <= metrics["test/uar"] <= 100
    assert (clone / "reports" / "eval" / "confusion.png").is_file()
    assert (clone / "dvc.lock").is_file()


def test_mlflow_has_a_run_per_stage_and_the_registered_model(project: tuple[Path, dict[str, str]]) -> None:
    from mlflow import MlflowClient

    clone, env = project
    client = MlflowClient(tracking_uri=env["MLFLOW_TRACKING_URI"])
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    by_stage = {r.data.tags.get("avf.stage"): r for r in runs}
    data_runs = {
        (r.data.tags["avf.stage"], r.data.tags.get("avf.dataset")) for r in runs if "processed" in r.data.metrics
    }
    assert data_runs == {(s, d) for s in ("faces", "audio", "manifest", "shards") for d in ("ravdess", "cremad")}
    for stage in ("pretrain", "intermediate", "finetune", "evaluate"):
        run = by_stage[stage]
        assert run.info.status == "FINISHED", stage
        assert run.data.metrics, f"{stage} logged no metrics"
        assert run.data.params, f"{stage} logged no params"
    assert any(k.startswith("train/loss") for k in by_stage["pretrain"].data.metrics)
    for stage in ("pretrain", "intermediate", "finetune"):  # the project's params.yaml pins amp "off"
        assert by_stage[stage].data.tags["avf.precision"] == "fp32", stage
        assert json.loads((clone / "models" / stage / "card.json").read_text())["precision"] == "fp32", stage
    import hashlib

    manifest_sha = hashlib.sha256((clone / "data/manifest/ravdess.parquet").read_bytes()).hexdigest()
    finetune = client.get_run(by_stage["finetune"].info.run_id)  # search results carry no dataset inputs
    assert finetune.data.tags["avf.manifest_sha256.ravdess"] == manifest_sha
    contexts = {d.dataset.name: [t.value for t in d.tags] for d in finetune.inputs.dataset_inputs}
    assert "ravdess-manifest" in contexts and "ravdess" in contexts
    registry = json.loads((clone / "reports" / "registry.json").read_text())
    name = registry["name"]
    version = client.get_model_version_by_alias(name, "candidate")
    assert int(version.version) == int(registry["version"])


def test_second_repro_is_a_no_op(project: tuple[Path, dict[str, str]]) -> None:
    clone, env = project
    out = _run(clone, "dvc", "repro", env=env).stdout
    assert "Running stage" not in out
    status = _run(clone, "dvc", "status", env=env).stdout
    assert "up to date" in status


def test_ablation_experiment_and_report(project: tuple[Path, dict[str, str]]) -> None:
    clone, env = project
    _run(clone, "git", "add", "-A", env=env)
    _run(clone, "git", "commit", "-qm", "baseline run", env=env)
    # A stage-3 ablation: DVC reruns fine-tuning and what follows it, and reuses the pretrained stages.
    out = _run(clone, "dvc", "exp", "run", "-n", "no-ld", "-S", "finetune.layer_decay=1.0", env=env).stdout
    assert "Running stage 'finetune'" in out and "Running stage 'evaluate'" in out
    assert "Running stage 'pretrain'" not in out and "Running stage 'intermediate'" not in out  # only what it affects
    _run(clone, "avf", "report", "ablations", "no-ld", "--out", "reports/ablations", env=env)
    md = (clone / "reports" / "ablations" / "ablations.md").read_text()
    assert "finetune.layer_decay" in md and "no-ld" in md and "test/uar" in md
