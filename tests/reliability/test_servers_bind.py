"""Every server the project starts listens on 127.0.0.1 by default (checked on the live sockets).

Covered elsewhere, not repeated here: Prefect and MLflow of ``infra/stack.sh`` (loopback sockets,
Prefect auth, refusal to expose without credentials) in ``tests/integration/test_infra.py``; an explicit
loopback MLflow server in ``tests/integration/test_mlflow_server.py``; the ``--expose`` refusals of
``avf.services`` in ``tests/unit/test_tracking.py::test_servers_bind_loopback_unless_exposed``.
Here: the private Ray cluster every ``avf train`` / Ray Train run starts, the MLflow server started
with no options, and the stack's Ray head with the setting that keeps it on loopback.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import pytest

from avf.services import free_port

pytestmark = [pytest.mark.reliability, pytest.mark.timeout(300)]

ROOT = Path(__file__).resolve().parents[2]
LOOPBACK = {"127.0.0.1", "::1", "::ffff:127.0.0.1"}

RAY_SCRIPT = """
import json, os, sys
from pathlib import Path

import psutil
import ray.train  # imported before the cluster starts, as avf.runtime.ray_train.fit does
from ray._private import ray_constants

import ray
from avf.config import RayConfig
from avf.data.parallel import run_tasks
from avf.runtime import cluster

if sys.argv[2] == "train":  # what avf train / avf predict --ray start
    cluster.ensure_cluster(RayConfig(num_workers=1), Path(sys.argv[1]))
    assert ray.get(ray.remote(lambda: 6 * 7).remote()) == 42  # a worker process is up and serving
else:  # the data stages with data.executor: ray and no ray.address
    os.environ["RAY_TMPDIR"] = sys.argv[1]
    assert [r for _, r in run_tasks(abs, [-6, 7], workers=1, executor="ray", ordered=True)] == [6, 7]
procs = [psutil.Process(), *psutil.Process().children(recursive=True)]
listen = {}
for p in procs:
    try:
        addrs = [c.laddr.ip for c in p.net_connections("inet") if c.status == psutil.CONN_LISTEN]
        listen[f"{p.pid} {p.name()}"] = addrs
    except psutil.Error:
        pass
print(json.dumps({
    "listen": listen,
    "node_ip": ray.util.get_node_ip_address(),
    "pids": [p.pid for p in procs[1:]],
    "env_after": os.environ.get("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"),
    "flag_after": ray_constants.ENABLE_RAY_CLUSTER,
}))
ray.shutdown()
"""


def _listening(pid: int) -> dict[str, list[str]]:
    """Listening sockets of ``pid`` and its descendants: ``{"<pid> <name>": ["ip port", ...]}``."""
    procs = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
    out = {}
    for p in procs:
        try:
            conns = p.net_connections("inet")
            out[f"{p.pid} {p.name()}"] = [f"{c.laddr.ip} {c.laddr.port}" for c in conns if c.status == "LISTEN"]
        except psutil.Error:
            continue
    return out


def _exposed(listen: dict[str, list[str]]) -> dict[str, list[str]]:
    """The processes with a socket on a non-loopback address (``"ip port"`` or bare ``"ip"`` entries)."""
    return {name: addrs for name, addrs in listen.items() if {a.split()[0] for a in addrs} - LOOPBACK}


def _wait_gone(pids: list[int], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        alive = [p for p in pids if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]
        if not alive:
            return
        assert time.monotonic() < deadline, f"processes left running: {alive}"
        time.sleep(0.5)


@pytest.mark.parametrize("starter", ["train", "data"])
def test_the_private_ray_cluster_listens_on_loopback_only(starter: str) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER")}
    with tempfile.TemporaryDirectory(prefix="avf-ray-", dir="/tmp") as short:  # Ray's socket paths: < 108 bytes
        proc = subprocess.run(
            [sys.executable, "-c", RAY_SCRIPT, short, starter],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=240,
        )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    names = " ".join(report["listen"])
    assert "gcs_server" in names and "raylet" in names  # the head's own servers were inspected
    assert sum(bool(ips) for ips in report["listen"].values()) >= 4
    assert _exposed(report["listen"]) == {}, report["listen"]
    assert report["node_ip"] == "127.0.0.1"
    # the setting is scoped to starting the cluster: a later ray.init(address=...) announces a real IP
    assert report["env_after"] is None and report["flag_after"] is True
    _wait_gone(report["pids"])


@pytest.mark.slow
def test_the_mlflow_server_started_without_options_listens_on_loopback_only(tmp_path: Path) -> None:
    state, port = tmp_path / "services", free_port()
    base = [sys.executable, "-m", "avf.services", "mlflow"]
    where = ["--port", str(port), "--state-dir", str(state)]
    start = subprocess.run(
        [*base, "start", *where, "--backend-store-uri", f"sqlite:///{tmp_path}/m.db", "--artifacts-destination",
         str(tmp_path / "artifacts")],
        cwd=tmp_path, capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    pid = json.loads((state / "mlflow.json").read_text())["pid"] if (state / "mlflow.json").exists() else None
    try:
        assert start.returncode == 0 and pid is not None, start.stderr[-3000:]
        listen = _listening(pid)
        assert f"127.0.0.1 {port}" in {a for addrs in listen.values() for a in addrs}, listen
        assert _exposed(listen) == {}, listen
    finally:
        subprocess.run([*base, "stop", "--state-dir", str(state)], capture_output=True, timeout=120)
    if pid is not None:
        _wait_gone([pid])


@pytest.mark.slow
def test_the_stack_ray_head_stays_on_loopback_with_the_documented_setting(tmp_path: Path) -> None:
    """``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` keeps Ray from swapping 127.0.0.1 for the host IP.

    ``infra/stack.sh`` starts ``ray start --head --node-ip-address=127.0.0.1``; without the variable
    Ray's GCS and raylet listen on every interface (token auth is what protects them, see
    infra/README.md). With it, the head (and the workers it spawns) stay on loopback.
    """
    state, port = tmp_path / "stack", free_port()
    env = {**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
    env.pop("RAY_ADDRESS", None)
    cmd = [str(ROOT / "infra" / "stack.sh")]
    opts = ["--state-dir", str(state)]
    with tempfile.TemporaryDirectory(prefix="avf-ray-", dir="/tmp") as ray_tmp:  # short: Ray's socket paths
        start = subprocess.run(
            [*cmd, "start", "--only", "ray", f"--ray-port={port}", "--ray-num-cpus=1",
             "--ray-object-store-bytes=100000000", f"--ray-temp-dir={ray_tmp}", *opts],
            env=env, capture_output=True, text=True, timeout=240,
        )  # fmt: skip
        pid = json.loads((state / "ray.json").read_text())["pid"] if (state / "ray.json").exists() else None
        try:
            assert start.returncode == 0 and pid is not None, start.stdout[-2000:] + start.stderr[-2000:]
            listen = _listening(pid)
            assert any("gcs_server" in name and ips for name, ips in listen.items()), listen
            assert _exposed(listen) == {}, listen
            pids = [int(name.split()[0]) for name in listen]
        finally:
            stop = subprocess.run([*cmd, "stop", *opts], env=env, capture_output=True, text=True, timeout=180)
        assert stop.returncode == 0, stop.stderr[-2000:]
        _wait_gone(pids)
