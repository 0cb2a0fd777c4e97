"""How a stage runs: its process lifecycle (signals, exit codes) and the Ray cluster it may use.

``avf.runtime`` is the only package that imports Ray; everything above it hands Ray plain functions.

* ``lifecycle``: SIGTERM handling and exit codes of a stage process.
* ``cluster``: join a Ray cluster or start a private one on 127.0.0.1 (``ensure_cluster``, ``loopback_only``).
* ``ray_train``: Ray Train workers running a given training function (``fit``, ``RaySession``).
* ``ray_tasks``: a function fanned out over items as Ray tasks (``run_ray_tasks``).
* ``ray_predict``: Ray Data batch inference with a given actor class (``map_batches_to_parquet``).
"""
