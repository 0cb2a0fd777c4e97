"""Prefect orchestration for avf: flows that run the DVC pipeline (the only package importing prefect).

python -m pipelines.serve          # serve the four deployments on this box (cron schedules)
prefect deploy --prefect-file infra/prefect.yaml --all   # or deploy them to work pools
"""
