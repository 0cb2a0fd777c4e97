#!/usr/bin/env bash
# Stop the MLflow server started by `infra/mlflow/serve.sh start` (by the PID it recorded).
exec "$(dirname "${BASH_SOURCE[0]}")/serve.sh" stop "$@"
