"""infra/: every YAML parses and matches the schema we can check here; the local stack script really
starts, reports and stops its servers; the cluster driver script runs and pushes a DVC experiment.

Not testable here (no Docker engine, Kubernetes or cloud): building the image, `docker compose up`,
`ray up`, applying the RayJob. Those files get structural and consistency checks only.
"""

from __future__ import annotations

import base64
import importlib.metadata
import inspect
import json
import os
import re
import secrets
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from string import Template
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
STACK = INFRA / "stack.sh"
PY = sys.executable
BIN = Path(PY).parent


def _load(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def test_every_infra_yaml_parses() -> None:
    files = sorted(p for p in INFRA.rglob("*") if p.suffix in (".yaml", ".yml"))
    assert {p.relative_to(INFRA).as_posix() for p in files} >= {
        "prefect.yaml",
        "compose.yaml",
        "ray/cluster.yaml",
        "ray/cluster-onprem.yaml",
        "ray/rayjob.yaml",
    }
    for path in files:
        docs = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
        assert docs and all(isinstance(d, dict) for d in docs), path


def test_prefect_yaml_validates_and_points_at_the_flows() -> None:
    from prefect.cli.deploy._models import PrefectYamlModel
    from prefect.client.schemas.schedules import CronSchedule
    from prefect.flows import Flow

    from pipelines import flows

    raw = _load(INFRA / "prefect.yaml")
    model = PrefectYamlModel.model_validate(raw)
    assert raw["prefect-version"] == importlib.metadata.version("prefect")
    names = {d.name for d in model.deployments}
    assert names == {"full-pipeline", "ingest-preprocess", "nightly-eval", "ablation-batch"}
    for dep in raw["deployments"]:
        file, _, func = dep["entrypoint"].partition(":")
        assert (ROOT / file).exists() and file == "pipelines/flows.py"
        flow = getattr(flows, func)
        assert isinstance(flow, Flow)
        signature = inspect.signature(flow.fn)
        assert set(dep.get("parameters", {})) <= set(signature.parameters), dep["name"]
        required = {n for n, p in signature.parameters.items() if p.default is inspect.Parameter.empty}
        assert required <= set(dep.get("parameters", {})), f"{dep['name']} lacks {required}"
        assert dep["work_pool"]["name"] in ("avf-gpu", "avf-cpu")
        for sched in dep.get("schedules") or []:
            CronSchedule(cron=sched["cron"], timezone=sched["timezone"])  # raises on a bad cron/zone
    by_name = {d["name"]: d for d in raw["deployments"]}
    assert by_name["nightly-eval"]["schedules"][0]["cron"] == "0 3 * * *"
    steps = json.dumps(raw["pull"])
    assert "git_clone" in steps and "dvc pull" in steps
    for exp, overrides in by_name["ablation-batch"]["parameters"]["experiments"].items():
        flows.validate_exp_name(exp)
        flows.validate_overrides(overrides)


def _rendered_ray_config(path: Path) -> dict[str, Any]:
    values = {"AVF_IMAGE": "registry.example.org/avf:abc1234", "AVF_HEAD_IP": "10.0.0.10"}
    text = Template(path.read_text()).safe_substitute(values, AVF_WORKER_IPS="[10.0.0.11, 10.0.0.12]")
    assert "${AVF_" not in text
    return yaml.safe_load(text)


@pytest.mark.parametrize("name", ["cluster.yaml", "cluster-onprem.yaml"])
def test_ray_cluster_configs_pass_rays_own_schema(name: str) -> None:
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = _rendered_ray_config(INFRA / "ray" / name)
    validate_config(config)
    validate_config(prepare_config(config))  # with the provider's defaults filled in
    assert config["docker"]["image"] == "registry.example.org/avf:abc1234"
    starts = " ".join(config["head_start_ray_commands"] + config["worker_start_ray_commands"])
    assert starts.count("RAY_AUTH_MODE=token") == 2 and "--include-dashboard=false" in starts
    assert "dashboard-host=0.0.0.0" not in starts
    assert "~/.ray/auth_token" in config["file_mounts"]
    if config["provider"]["type"] == "local":
        assert config["provider"]["worker_ips"] == ["10.0.0.11", "10.0.0.12"]


def test_rayjob_manifest_runs_the_driver_script_with_the_installed_ray() -> None:
    import ray

    job = _load(INFRA / "ray" / "rayjob.yaml")
    assert (job["apiVersion"], job["kind"]) == ("ray.io/v1", "RayJob")
    spec = job["spec"]
    script, name, *args = spec["entrypoint"].split()
    assert script == "/app/infra/ray/run_dvc.sh"  # the image copies the repo to /app
    local = INFRA / "ray" / "run_dvc.sh"
    assert local.exists() and os.access(local, os.X_OK)
    assert name == "pretrain-k8s" and args[0] == "pretrain"
    assert spec["rayClusterSpec"]["rayVersion"] == ray.__version__
    cluster = spec["rayClusterSpec"]
    pods = [cluster["headGroupSpec"]["template"]] + [g["template"] for g in cluster["workerGroupSpecs"]]
    for pod in pods:
        (container,) = pod["spec"]["containers"]
        assert container["image"] == "${AVF_IMAGE}"
        assert {"secretRef": {"name": "avf-credentials"}} in container["envFrom"]
    (gpu,) = cluster["workerGroupSpecs"]
    assert gpu["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    subprocess.run(["bash", "-n", str(local)], check=True)  # shell syntax


def test_dockerfile_installs_the_lock_and_copies_files_that_exist() -> None:
    text = (INFRA / "docker" / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11[-\w.]*$", text, re.M)
    makefile_uv = re.search(r"^UV_VERSION := (\S+)", (ROOT / "Makefile").read_text(), re.M)
    assert makefile_uv and f"ARG UV_VERSION={makefile_uv.group(1)}" in text
    for src in re.findall(r"^COPY (?!--)(\S+) ", text, re.M):
        assert src == "." or (ROOT / src).exists(), src
    assert "uv pip sync --python /opt/venv/bin/python requirements.lock" in text
    assert "--no-deps -e ." in text and "python -m avf.assets" in text
    ignored = (INFRA / "docker" / "Dockerfile.dockerignore").read_text().split()
    assert {".venv", ".git", "data", ".dvc/config.local", ".dvc/cache", "mlruns.db"} <= set(ignored)


def test_compose_stack_binds_loopback_requires_secrets_and_checks_health() -> None:
    compose = _load(INFRA / "compose.yaml")
    services = compose["services"]
    assert set(services) == {"postgres", "minio", "minio-buckets", "mlflow", "prefect"}
    for name, svc in services.items():
        for port in svc.get("ports", []):
            assert port.startswith("${AVF_BIND:-127.0.0.1}:"), (name, port)
        if name != "minio-buckets":
            assert svc["healthcheck"]["test"], name
        for dep, cond in (svc.get("depends_on") or {}).items():
            assert dep in services and cond["condition"] in ("service_healthy", "service_completed_successfully")
    assert "ports" not in services["postgres"]
    text = (INFRA / "compose.yaml").read_text()
    for secret in ("POSTGRES_PASSWORD", "MINIO_ROOT_PASSWORD", "MLFLOW_ADMIN_PASSWORD", "PREFECT_AUTH_STRING"):
        assert f"${{{secret}:?" in text  # required from the environment, never defaulted
    assert f"mlflow[auth]=={importlib.metadata.version('mlflow')}" in text
    assert services["prefect"]["image"] == f"prefecthq/prefect:{importlib.metadata.version('prefect')}-python3.11"
    assert "--app-name=basic-auth" in services["mlflow"]["command"]
    assert "PREFECT_SERVER_API_AUTH_STRING" in services["prefect"]["environment"]


# ---------------------------------------------------------------------------------------------
# infra/stack.sh
# ---------------------------------------------------------------------------------------------
def _stack(
    state: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(STACK), *args, "--state-dir", str(state)],
        env=env or dict(os.environ),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_stack_refuses_to_expose_or_authenticate_without_credentials(tmp_path: Path) -> None:
    secrets_ = ("PREFECT_SERVER_API_AUTH_STRING", "MLFLOW_FLASK_SERVER_SECRET_KEY", "MLFLOW_AUTH_ADMIN_PASSWORD")
    env = {k: v for k, v in os.environ.items() if k not in secrets_}
    out = _stack(tmp_path, "start", "--only", "prefect", "--expose", env=env)
    assert out.returncode == 2 and "PREFECT_SERVER_API_AUTH_STRING" in out.stderr
    out = _stack(tmp_path, "start", "--only", "ray", "--expose", env=env)
    assert out.returncode == 2 and "--advertise-ip" in out.stderr
    out = _stack(tmp_path, "start", "--only", "mlflow", "--auth", env=env)
    assert out.returncode == 2 and "MLflow basic auth needs MLFLOW_FLASK_SERVER_SECRET_KEY" in out.stderr
    assert "MLFLOW_AUTH_ADMIN_PASSWORD (first start" in out.stderr and "Flask-WTF" not in out.stderr  # installed
    assert not list(tmp_path.glob("*.json"))  # nothing was started
    out = _stack(tmp_path, "status")
    assert out.returncode == 3 and out.stdout.count("stopped") == 3


def _session_members(sid: int) -> list[int]:
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid:  # fields after "(comm)": state ppid pgrp session ...
            members.append(int(stat.parent.name))
    return members


def _http(url: str, auth: str | None = None, body: bytes = b"{}") -> int:
    req = urllib.request.Request(url, data=body, headers={"content-type": "application/json"}, method="POST")
    if auth:
        req.add_header("Authorization", "Basic " + base64.b64encode(auth.encode()).decode())
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


@pytest.mark.slow
@pytest.mark.timeout(420)
def test_stack_starts_reports_and_stops_prefect_mlflow_and_ray(tmp_path: Path) -> None:
    import psutil

    from avf.services import free_port

    state = tmp_path / "stack"
    ports = {"prefect": free_port(), "mlflow": free_port(), "ray": free_port()}
    env = {
        **os.environ,
        "PREFECT_HOME": str(tmp_path / "prefect-home"),
        "PREFECT_SERVER_API_AUTH_STRING": "avf:s3cret",  # Prefect auth on loopback too
    }
    args = [
        f"--prefect-port={ports['prefect']}",
        f"--mlflow-port={ports['mlflow']}",
        f"--ray-port={ports['ray']}",
        f"--mlflow-backend-store-uri=sqlite:///{tmp_path / 'mlflow.db'}",
        f"--mlflow-artifacts-destination={tmp_path / 'artifacts'}",
        "--ray-num-cpus=1",
        "--ray-object-store-bytes=100000000",
    ]
    t0 = time.monotonic()
    out = _stack(state, "start", *args, env=env)
    started = time.monotonic() - t0
    pids = (
        {name: json.loads((state / f"{name}.json").read_text())["pid"] for name in ports} if out.returncode == 0 else {}
    )
    try:
        assert out.returncode == 0, out.stdout + out.stderr
        print(f"stack start (prefect + mlflow + ray): {started:.1f} s")
        status = _stack(state, "status", *args, env=env)
        assert status.returncode == 0 and status.stdout.count("healthy") == 3, status.stdout
        again = _stack(state, "start", *args, env=env)
        assert again.returncode == 0 and again.stdout.count("already running") == 3

        listening = {c.laddr.port: c.laddr.ip for c in psutil.net_connections("tcp") if c.status == "LISTEN"}
        assert listening[ports["prefect"]] == "127.0.0.1" and listening[ports["mlflow"]] == "127.0.0.1"
        api = f"http://127.0.0.1:{ports['prefect']}/api/flows/filter"
        assert _http(api) == 401 and _http(api, "avf:wrong") == 401 and _http(api, "avf:s3cret") == 200

        exports = dict(re.findall(r"^export (\w+)=(.*)$", (state / "env.sh").read_text(), re.M))
        assert exports["PREFECT_API_URL"] == f"http://127.0.0.1:{ports['prefect']}/api"
        assert exports["MLFLOW_TRACKING_URI"] == f"http://127.0.0.1:{ports['mlflow']}"
        assert exports["RAY_ADDRESS"] == f"127.0.0.1:{ports['ray']}" and exports["RAY_AUTH_MODE"] == "token"
        assert oct(Path(exports["RAY_AUTH_TOKEN_PATH"]).stat().st_mode & 0o777) == "0o600"
        client = subprocess.run(  # a Ray client with the stack's token joins the head
            [PY, "-c", "import ray; ray.init(); print(ray.get(ray.remote(lambda: 6 * 7).remote()))"],
            env={**os.environ, **exports},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert client.returncode == 0 and client.stdout.strip().endswith("42"), client.stderr[-2000:]
    finally:
        stop = _stack(state, "stop", env=env)
    assert stop.returncode == 0, stop.stderr
    for name, pid in pids.items():
        assert not Path(f"/proc/{pid}").exists(), name
        assert _session_members(pid) == [], f"{name} left processes behind"
    assert _stack(state, "status", env=env).returncode == 3


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_stack_starts_mlflow_with_basic_auth_on_loopback(tmp_path: Path) -> None:
    import psutil

    from avf.services import free_port

    state, port = tmp_path / "stack", free_port()
    password = "admin-" + secrets.token_hex(8)
    env = {**os.environ, "MLFLOW_FLASK_SERVER_SECRET_KEY": secrets.token_hex(16)}
    env["MLFLOW_AUTH_ADMIN_PASSWORD"] = password
    args = [
        "--only=mlflow",
        "--auth",
        f"--mlflow-port={port}",
        f"--mlflow-backend-store-uri=sqlite:///{tmp_path / 'mlflow.db'}",
        f"--mlflow-artifacts-destination={tmp_path / 'artifacts'}",
    ]
    out = _stack(state, "start", *args, env=env)
    pid = json.loads((state / "mlflow.json").read_text())["pid"] if (state / "mlflow.json").exists() else None
    try:
        assert out.returncode == 0 and pid is not None, out.stdout + out.stderr
        listening = {c.laddr.port: c.laddr.ip for c in psutil.net_connections("tcp") if c.status == "LISTEN"}
        assert listening[port] == "127.0.0.1"
        api = f"http://127.0.0.1:{port}/api/2.0/mlflow/experiments/search"
        assert _http(api) == 401 and _http(api, "admin:wrong-password") == 401
        assert _http(api, f"admin:{password}", b'{"max_results": 10}') == 200
        assert oct((state / "mlflow_auth.ini").stat().st_mode & 0o777) == "0o600"
        assert (state / "mlflow_auth.db").exists()  # the users live in the state dir
        assert password not in (state / "mlflow_auth.ini").read_text()  # the admin password stays in the environment
    finally:
        stop = _stack(state, "stop", "--only=mlflow", env=env)
    assert stop.returncode == 0, stop.stderr
    assert pid is not None and not Path(f"/proc/{pid}").exists() and _session_members(pid) == []


# ---------------------------------------------------------------------------------------------
# infra/ray/run_dvc.sh
# ---------------------------------------------------------------------------------------------
def _git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_run_dvc_script_runs_an_experiment_in_a_clone_and_pushes_it(tmp_path: Path) -> None:
    origin, remote = tmp_path / "origin", tmp_path / "dvc-remote"
    origin.mkdir()
    (origin / "params.yaml").write_text("p:\n  x: 1\n")
    (origin / "dvc.yaml").write_text(
        yaml.safe_dump(
            {
                "stages": {
                    "train": {
                        "cmd": f"{PY} -c \"import os,yaml; x=yaml.safe_load(open('params.yaml'))['p']['x'];"
                        " open('out.txt','w').write(str(x) + ' ' + os.environ['PYTHONPATH'].split(':')[0])\"",
                        "params": ["p"],
                        "outs": ["out.txt"],
                    }
                }
            }
        )
    )
    _git(origin, "init", "-q", "-b", "main")
    _git(origin, "config", "user.email", "t@example.org")
    _git(origin, "config", "user.name", "t")
    dvc = str(BIN / "dvc")
    subprocess.run([dvc, "init", "-q"], cwd=origin, check=True)
    subprocess.run([dvc, "remote", "add", "-d", "store", str(remote)], cwd=origin, check=True)
    _git(origin, "add", "-A")
    _git(origin, "commit", "-qm", "project")

    clone = tmp_path / "clone"
    env = {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
        "AVF_GIT_URL": str(origin),
        "AVF_GIT_REF": "main",
        "AVF_WORKDIR": str(clone),
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.org",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.org",
    }
    out = subprocess.run(
        [str(INFRA / "ray" / "run_dvc.sh"), "x3", "-S", "p.x=3"], env=env, capture_output=True, text=True, timeout=240
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert (clone / "out.txt").read_text() == f"3 {clone}"  # ran in the clone, with the clone first on PYTHONPATH
    assert "refs/exps/" in _git(origin, "for-each-ref", "refs/exps")  # the experiment reached the origin
    shown = subprocess.run([dvc, "exp", "show", "--json"], cwd=origin, check=True, capture_output=True, text=True)
    assert '"x3"' in shown.stdout
    assert any(p.is_file() for p in remote.rglob("*"))  # and its output reached the DVC remote


# ---------------------------------------------------------------------------------------------
# Makefile
# ---------------------------------------------------------------------------------------------
def test_make_recipes_find_the_venv_tools_without_an_activated_venv() -> None:
    """`make demo` runs `dvc repro`, whose stage commands call `avf`: it must resolve to .venv/bin/avf
    from a shell whose PATH does not contain the venv (a fresh terminal)."""
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": os.environ.get("HOME", "/tmp")}
    out = subprocess.run(
        ["make", "-s", "--no-print-directory", "--eval=_probe_path: ; @command -v avf dvc", "_probe_path"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == [str(ROOT / ".venv/bin/avf"), str(ROOT / ".venv/bin/dvc")]
