"""Start, stop and check the local stack: Prefect server, MLflow server and a Ray head (``infra/stack.sh``).

    infra/stack.sh start                 # all three, bound to 127.0.0.1; PID files in .stack/
    infra/stack.sh status                # exit 0 all healthy, 1 one not answering, 3 one not running
    source .stack/env.sh                 # PREFECT_API_URL, MLFLOW_TRACKING_URI, RAY_ADDRESS for clients
    infra/stack.sh stop                  # by PID (never `ray stop`, which kills every Ray on the machine)
    infra/stack.sh start --only prefect,mlflow

Listening beyond 127.0.0.1 needs ``--expose`` and authentication: PREFECT_SERVER_API_AUTH_STRING
for Prefect, MLflow's basic-auth app (always on when exposed), Ray token auth. Ray's GCS and raylet
listen on every interface whatever the bind address, so the Ray head always runs with token auth
(the token is written to .stack/ray_auth_token) and without its dashboard.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script: make `pipelines` importable (avf is installed)
    sys.path.insert(0, str(ROOT))

from avf.env import apply_defaults  # noqa: E402
from avf.services import AUTH_CONFIG_NAME, MlflowServer, ServiceError, http_ok, stop_pid, write_auth_config  # noqa: E402
from pipelines.proc import executable  # noqa: E402
from pipelines.server import AUTH_ENV, PrefectServer, health  # noqa: E402

SERVICES = ("prefect", "mlflow", "ray")
RAY_TOKEN_FILE = "ray_auth_token"


@dataclass
class Launched:
    """A service process this script started (or found in its PID file)."""

    name: str
    pid: int
    url: str
    log: str
    cmd: list[str]
    proc: subprocess.Popen[bytes] | None = None

    def record(self) -> dict[str, object]:
        return {"pid": self.pid, "url": self.url, "log": self.log, "cmd": self.cmd}


# ---------------------------------------------------------------------------------------------
# processes and PID files
# ---------------------------------------------------------------------------------------------
def _cmdline(pid: int) -> list[str] | None:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return None


def _is_ours(pid: int, cmd: Sequence[str]) -> bool:
    """The PID is alive and still runs the command we started (not a recycled PID)."""
    line = _cmdline(pid)
    if not line:
        return False
    return any(Path(part).name == Path(cmd[0]).name for part in line[:2]) and all(arg in line for arg in cmd[1:])


def _pid_file(state: Path, name: str) -> Path:
    return state / f"{name}.json"


def _read_pid(state: Path, name: str) -> Launched | None:
    path = _pid_file(state, name)
    if not path.exists():
        return None
    info = json.loads(path.read_text())
    return Launched(name, int(info["pid"]), str(info["url"]), str(info["log"]), list(info["cmd"]))


def _running(state: Path, name: str) -> Launched | None:
    found = _read_pid(state, name)
    if found is not None and _is_ours(found.pid, found.cmd):
        return found
    if found is not None:
        _pid_file(state, name).unlink(missing_ok=True)  # stale
    return None


def _spawn(name: str, cmd: list[str], env: dict[str, str], log: Path) -> Launched:
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        proc = subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, start_new_session=True
        )
    return Launched(name, proc.pid, "", str(log), cmd, proc)


def _tcp_open(host: str, port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=1.0):
        return True
    return False


def _tail(path: str, lines: int = 15) -> str:
    with contextlib.suppress(OSError):
        return "\n".join(Path(path).read_text(errors="replace").splitlines()[-lines:])
    return ""


# ---------------------------------------------------------------------------------------------
# the three services
# ---------------------------------------------------------------------------------------------
def _bind_host(a: argparse.Namespace) -> str:
    return "0.0.0.0" if a.expose else "127.0.0.1"


def _start_prefect(a: argparse.Namespace) -> tuple[Launched, Callable[[], bool]]:
    home = Path(os.environ.get("PREFECT_HOME") or ROOT / ".prefect")
    server = PrefectServer(
        home=home,
        port=a.prefect_port,
        host=_bind_host(a),
        expose=a.expose,
        database_url=a.prefect_database_url,
        log_path=a.state_dir / "prefect.log",
    )
    if a.auth and not server.auth_string:
        raise ServiceError(f"--auth needs {AUTH_ENV}=user:password for the Prefect server")
    cmd = server.command()  # raises if exposed without an auth string
    launched = _spawn("prefect", cmd, server.env(), a.state_dir / "prefect.log")
    launched.url = server.api_url
    return launched, lambda: health(server.api_url, server.auth_string)


def _start_mlflow(a: argparse.Namespace) -> tuple[Launched, Callable[[], bool]]:
    auth = a.expose or a.auth  # exposed => MLflow's basic-auth app (see infra/README.md)
    server = MlflowServer(
        backend_store_uri=a.mlflow_backend_store_uri or f"sqlite:///{ROOT / 'mlruns.db'}",
        artifacts_destination=a.mlflow_artifacts_destination or str(ROOT / "mlartifacts"),
        port=a.mlflow_port,
        host=_bind_host(a),
        expose=a.expose,
        basic_auth=auth,
        # users in the state dir, not the cwd; the admin's password comes from MLFLOW_AUTH_ADMIN_PASSWORD
        auth_config=write_auth_config(a.state_dir / AUTH_CONFIG_NAME, admin_user=a.mlflow_admin_user) if auth else None,
    )
    cmd = server.command()  # raises if the basic-auth app lacks its secrets
    launched = _spawn("mlflow", cmd, server.env(), a.state_dir / "mlflow.log")
    launched.url = server.url
    return launched, lambda: http_ok(server.url + "/health")  # /health needs no credentials


def ray_token(state: Path) -> Path:
    """The Ray auth token file (created once, mode 0600)."""
    path = state / RAY_TOKEN_FILE
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32))
    return path


def ray_temp_dir(a: argparse.Namespace) -> Path:
    """Ray's session dir; kept short because Ray's unix socket paths must stay under ~107 bytes."""
    if a.ray_temp_dir:
        return Path(a.ray_temp_dir).resolve()
    local = (a.state_dir / "ray").resolve()
    if len(str(local)) <= 48:
        return local
    return Path("/tmp") / f"avf-ray-{hashlib.sha1(str(local).encode()).hexdigest()[:10]}"


def ray_env(state: Path) -> dict[str, str]:
    return {
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN_PATH": str(ray_token(state).resolve()),
        "RAY_USAGE_STATS_ENABLED": "0",
    }


def _start_ray(a: argparse.Namespace) -> tuple[Launched, Callable[[], bool]]:
    if a.expose and not a.advertise_ip:
        raise ServiceError("--expose with Ray needs --advertise-ip (the address other nodes reach this head on)")
    node_ip = a.advertise_ip if a.expose else "127.0.0.1"
    cmd = [
        executable("ray"),
        "start",
        "--head",
        "--block",  # stays in the foreground: its PID is the handle; SIGTERM shuts the node down
        f"--node-ip-address={node_ip}",
        f"--port={a.ray_port}",
        "--include-dashboard=false",
        "--disable-usage-stats",
        f"--temp-dir={ray_temp_dir(a)}",
        f"--num-cpus={a.ray_num_cpus}",
        f"--object-store-memory={a.ray_object_store_bytes}",
    ]
    env = {**os.environ, **ray_env(a.state_dir)}
    if not a.expose:
        # Ray swaps 127.0.0.1 for the host's routable IP (and listens on every interface) unless this is
        # 0 (ray._private.services.resolve_ip_for_localhost); see avf.runtime.cluster.loopback_only.
        env.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    launched = _spawn("ray", cmd, env, a.state_dir / "ray.log")
    launched.url = f"{node_ip}:{a.ray_port}"
    return launched, lambda: _tcp_open(node_ip, a.ray_port) and "block forever" in _tail(launched.log, 200)


STARTERS = {"prefect": _start_prefect, "mlflow": _start_mlflow, "ray": _start_ray}


def _write_env(state: Path) -> Path:
    """``.stack/env.sh``: what a client shell needs to use the running services."""
    lines = [
        "# generated by infra/stack.sh; source it: `source .stack/env.sh`",
        "# servers started with --auth/--expose also need PREFECT_API_AUTH_STRING (= the server's auth string)",
        "# and MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD in the client's environment",
    ]
    if prefect := _running(state, "prefect"):
        lines.append(f"export PREFECT_API_URL={prefect.url}")
    if mlflow := _running(state, "mlflow"):
        lines.append(f"export MLFLOW_TRACKING_URI={mlflow.url}")
    if ray := _running(state, "ray"):
        lines += [f"export RAY_ADDRESS={ray.url}"] + [f"export {k}={v}" for k, v in ray_env(state).items()]
        if ray.url.startswith("127.0.0.1:"):
            # A driver on this machine must also keep 127.0.0.1: without this Ray swaps it for the host IP
            # and looks for the (loopback-only) GCS there, waiting forever.
            lines.append("export RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0")
    path = state / "env.sh"
    path.write_text("\n".join(lines) + "\n")
    return path


# ---------------------------------------------------------------------------------------------
# commands
# ---------------------------------------------------------------------------------------------
def start(a: argparse.Namespace) -> int:
    a.state_dir.mkdir(parents=True, exist_ok=True)
    pending: list[tuple[Launched, Callable[[], bool]]] = []
    for name in a.only:
        if found := _running(a.state_dir, name):
            print(f"{name}: already running (pid {found.pid}, {found.url})")
            continue
        try:
            launched, ready = STARTERS[name](a)
        except (ServiceError, FileNotFoundError) as e:
            print(f"{name}: error: {e}", file=sys.stderr)
            for other, _ in pending:
                stop_pid(other.pid, proc=other.proc)
            return 2
        _pid_file(a.state_dir, name).write_text(json.dumps(launched.record()) + "\n")
        pending.append((launched, ready))
    failed = False
    deadline = time.monotonic() + a.timeout
    waiting = list(pending)
    while waiting and time.monotonic() < deadline:
        for item in list(waiting):
            launched, ready = item
            if launched.proc is not None and launched.proc.poll() is not None:
                print(
                    f"{launched.name}: exited with {launched.proc.returncode}:\n{_tail(launched.log)}", file=sys.stderr
                )
                failed = True
                waiting.remove(item)
            elif ready():
                print(f"{launched.name}: up (pid {launched.pid}) at {launched.url}; log {launched.log}")
                waiting.remove(item)
        time.sleep(0.25)
    for launched, _ in waiting:
        print(f"{launched.name}: not ready after {a.timeout:.0f} s:\n{_tail(launched.log)}", file=sys.stderr)
        failed = True
    if failed:
        for launched, _ in pending:
            stop_pid(launched.pid, proc=launched.proc)
            _pid_file(a.state_dir, launched.name).unlink(missing_ok=True)
        return 1
    print(f"client settings: source {_write_env(a.state_dir)}")
    return 0


def stop(a: argparse.Namespace) -> int:
    for name in reversed(a.only):  # Ray first, Prefect (the API clients talk to) last
        found = _read_pid(a.state_dir, name)
        if found is None:
            print(f"{name}: not started by infra/stack.sh")
            continue
        if _is_ours(found.pid, found.cmd):
            stop_pid(found.pid, timeout=30)
            print(f"{name}: stopped (pid {found.pid})")
        else:
            print(f"{name}: was not running (stale PID file removed)")
        _pid_file(a.state_dir, name).unlink(missing_ok=True)
    if a.state_dir.exists():
        _write_env(a.state_dir)
    return 0


def status(a: argparse.Namespace) -> int:
    """Exit 0: all selected services healthy; 1: one is not answering; 3: one is not running."""
    code = 0
    for name in a.only:
        found = _running(a.state_dir, name)
        if found is None:
            print(f"{name}: stopped")
            code = code or 3
            continue
        if name == "prefect":
            ok = health(found.url, os.environ.get(AUTH_ENV))
        elif name == "mlflow":
            ok = http_ok(found.url + "/health")
        else:
            host, _, port = found.url.rpartition(":")
            ok = _tcp_open(host, int(port))
        print(f"{name}: {'healthy' if ok else 'NOT ANSWERING'} (pid {found.pid}) at {found.url}")
        code = code or (0 if ok else 1)
    return code


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    env = os.environ.get
    p = argparse.ArgumentParser(prog="infra/stack.sh", description=__doc__.split("\n\n")[0])
    p.add_argument("action", choices=("start", "stop", "status", "env"))
    p.add_argument("--only", default=",".join(SERVICES), help="comma-separated subset of prefect,mlflow,ray")
    p.add_argument("--state-dir", type=Path, default=Path(env("AVF_STACK_DIR", str(ROOT / ".stack"))))
    p.add_argument("--expose", action="store_true", help="listen on all interfaces (implies --auth)")
    p.add_argument(
        "--auth",
        action="store_true",
        help="require credentials on 127.0.0.1 too (Prefect auth string, MLflow basic auth)",
    )
    p.add_argument("--mlflow-admin-user", default="admin", help="MLflow basic-auth admin user [admin]")
    p.add_argument("--advertise-ip", default=None, help="with --expose: this head's address for Ray nodes")
    p.add_argument("--timeout", type=float, default=180.0, help="seconds to wait for health [180]")
    p.add_argument("--prefect-port", type=int, default=int(env("AVF_PREFECT_PORT", "4200")))
    p.add_argument("--prefect-database-url", default=env("PREFECT_API_DATABASE_CONNECTION_URL"))
    p.add_argument("--mlflow-port", type=int, default=int(env("AVF_MLFLOW_PORT", "5000")))
    p.add_argument("--mlflow-backend-store-uri", default=None, help="default sqlite:///<repo>/mlruns.db")
    p.add_argument("--mlflow-artifacts-destination", default=None, help="default <repo>/mlartifacts; or s3://...")
    p.add_argument("--ray-port", type=int, default=int(env("AVF_RAY_PORT", "6380")))
    p.add_argument("--ray-num-cpus", type=int, default=os.cpu_count() or 1)
    p.add_argument("--ray-object-store-bytes", type=int, default=512 * 1024**2)
    p.add_argument("--ray-temp-dir", default=None, help="default .stack/ray (or /tmp/avf-ray-<hash> if long)")
    a = p.parse_args(argv)
    a.only = [s.strip() for s in a.only.split(",") if s.strip()]
    unknown = sorted(set(a.only) - set(SERVICES))
    if unknown:
        p.error(f"unknown service(s): {', '.join(unknown)}")
    a.state_dir = a.state_dir.resolve()
    return a


def main(argv: Sequence[str] | None = None) -> int:
    apply_defaults(ROOT)  # offline: no analytics or telemetry from any service
    a = parse(argv)
    if a.action == "env":
        print(_write_env(a.state_dir).read_text(), end="")
        return 0
    return {"start": start, "stop": stop, "status": status}[a.action](a)


if __name__ == "__main__":
    sys.exit(main())
