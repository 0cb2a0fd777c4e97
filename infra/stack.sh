#!/usr/bin/env bash
# The local stack (Prefect server, MLflow server, Ray head): infra/stack.sh start|stop|status|env [options]
# Everything binds 127.0.0.1 unless --expose; PID files and logs in .stack/. See infra/stack.py --help.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
exec "${AVF_PYTHON:-$root/.venv/bin/python}" "$root/infra/stack.py" "$@"
