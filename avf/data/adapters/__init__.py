"""Dataset adapters (one module per dataset family); importing this package registers them all."""

from avf.data.adapters.base import Adapter, Problem, RawClip, ScanResult, get_adapter, list_adapters, register_adapter

__all__ = ["Adapter", "Problem", "RawClip", "ScanResult", "get_adapter", "list_adapters", "register_adapter"]

# Importing a module registers its adapters (one module per dataset family).
from avf.data.adapters import (
    avcaffe,  # noqa: F401
    cremad,  # noqa: F401
    dfew,  # noqa: F401
    folder,  # noqa: F401
    iemocap,  # noqa: F401
    mafw,  # noqa: F401
    mer,  # noqa: F401
    microexpression,  # noqa: F401
    msp_improv,  # noqa: F401
    ravdess,  # noqa: F401
    user_csv,  # noqa: F401
    voxceleb2,  # noqa: F401
    werewolf_xl,  # noqa: F401
)
