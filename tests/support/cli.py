"""The ``avf`` CLI run in-process by the end-to-end tests, against an MLflow store of the test's own."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from avf import tracking
from avf.cli import app


def invoke(*args: str) -> Any:
    """Run ``avf args...`` in-process; the root logging handlers it installs (on CliRunner's streams) are undone."""
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        return CliRunner().invoke(app, list(args))
    finally:
        root.handlers[:], root.level = saved[0], saved[1]


def avf_ok(*args: str) -> str:
    """:func:`invoke` that must succeed; its output."""
    result = invoke(*args)
    assert result.exit_code == 0, f"avf {' '.join(args)}:\n{result.output}"
    return result.output


@contextlib.contextmanager
def own_tracking_store(folder: Path) -> Iterator[None]:
    """MLflow runs go to ``folder`` (SQLite store and offline buffer) while the block runs; the environment is
    restored after it."""
    keys = ("MLFLOW_TRACKING_URI", tracking.BUFFER_DIR_ENV, "DVC_EXP_NAME")
    saved = {k: os.environ.get(k) for k in keys}
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{folder / 'mlruns.db'}"
    os.environ[tracking.BUFFER_DIR_ENV] = str(folder / "mlflow-buffer")
    os.environ.pop("DVC_EXP_NAME", None)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        tracking.configure(None)


def data_stages(
    params: Path, name: str, *, faces: Path, audio: Path, manifest: Path, shards: Path, reports: Path
) -> None:
    """``avf data faces | audio | manifest | shards`` for dataset ``name`` (``shards``: its shard folder)."""
    p = ("--params", str(params))
    r = ("--reports", str(reports))
    avf_ok(*p, "data", "faces", "-d", name, "--out", str(faces), *r)
    avf_ok(*p, "data", "audio", "-d", name, "--faces", str(faces), "--out", str(audio), *r)
    avf_ok(*p, "data", "manifest", "-d", name, "--faces", str(faces), "--audio", str(audio), "--out", str(manifest), *r)
    avf_ok(*p, "data", "shards", "-d", name, "--manifest", str(manifest), "--out", str(shards), *r)
