"""Dataset adapters (one module per dataset family); importing this package registers them all."""

from avf.data.adapters.base import Adapter, Problem, RawClip, ScanResult, get_adapter, list_adapters, register_adapter

__all__ = ["Adapter", "Problem", "RawClip", "ScanResult", "get_adapter", "list_adapters", "register_adapter"]

# Importing a module registers its adapters (one module per dataset family).
from avf.data.adapters import (
    cremad,  # noqa: F401
    ravdess,  # noqa: F401
)
