# Offline, project-local settings for the services the pipeline uses (included by the Makefile and
# exported to every command it runs). Nothing phones home; state stays inside the project.
export DVC_NO_ANALYTICS := 1
export MLFLOW_DISABLE_TELEMETRY := true
export DO_NOT_TRACK := true
export RAY_USAGE_STATS_ENABLED := 0
export RAY_AUTH_MODE ?= disabled
export PREFECT_HOME ?= $(CURDIR)/.prefect
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS := 120
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false
