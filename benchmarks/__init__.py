"""Performance benchmarks: ``python -m benchmarks [--quick]`` (see ``benchmarks/__main__.py``)."""
