"""The stages of the project's ``dvc.yaml``, as the tests that hold it against the code read them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

DVC_YAML = Path(__file__).resolve().parents[2] / "dvc.yaml"


def dvc_stages() -> dict[str, dict[str, Any]]:
    """Stage name -> its definition (a ``foreach`` stage: its ``do`` part, with ``${key}`` unexpanded)."""
    stages = yaml.safe_load(DVC_YAML.read_text())["stages"]
    return {name: stage.get("do", stage) for name, stage in stages.items()}
