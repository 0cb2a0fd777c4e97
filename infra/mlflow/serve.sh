#!/usr/bin/env bash
# MLflow tracking server for this project, bound to 127.0.0.1:5000 (see infra/mlflow/README.md).
#   infra/mlflow/serve.sh                 # foreground
#   infra/mlflow/serve.sh start|stop|status
#   infra/mlflow/serve.sh run --backend-store-uri postgresql://... --artifacts-destination s3://bucket/mlflow
# Other interfaces only with --expose (then add --basic-auth or put it behind an authenticating proxy).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
py="${PYTHON:-$root/.venv/bin/python}"
[ -x "$py" ] || py="$(command -v python3)"
cd "$root"
case "${1:-}" in
  run|start|stop|status) ;;
  *) set -- run "$@" ;;
esac
exec "$py" -m avf.services mlflow "$@"
