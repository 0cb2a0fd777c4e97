"""Nested mappings (parsed JSON/YAML) as flat ``{"a.b": leaf}`` dicts."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["flatten", "flatten_numbers"]


def flatten(obj: Any, sep: str = ".", prefix: str = "") -> dict[str, Any]:
    """``{"test": {"uar": 0.5}}`` -> ``{"test.uar": 0.5}``: every leaf under its joined key (a bare leaf: ``{}``)."""
    if isinstance(obj, Mapping):
        out: dict[str, Any] = {}
        for key, value in obj.items():
            out.update(flatten(value, sep, f"{prefix}{sep}{key}" if prefix else str(key)))
        return out
    return {prefix: obj} if prefix else {}


def flatten_numbers(obj: Any, sep: str = ".") -> dict[str, float]:
    """:func:`flatten` keeping the numbers only (bools and other leaves dropped), as floats."""
    return {k: float(v) for k, v in flatten(obj, sep).items() if isinstance(v, int | float) and not isinstance(v, bool)}
