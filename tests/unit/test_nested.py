"""Nested mappings as flat dicts (metrics files for MLflow tags and the Prefect summary)."""

from __future__ import annotations

from avf.utils.nested import flatten, flatten_numbers


def test_flatten_joins_keys_and_keeps_numbers_only_where_asked() -> None:
    data = {"test": {"uar": 50, "ok": True, "name": "x"}, "clips": 3.5, "empty": {}}
    assert flatten(data) == {"test.uar": 50, "test.ok": True, "test.name": "x", "clips": 3.5}
    assert flatten_numbers(data, sep="/") == {"test/uar": 50.0, "clips": 3.5}
    assert flatten(7) == {} and flatten_numbers([1, 2]) == {}
