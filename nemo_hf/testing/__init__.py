"""Test helpers: a local Hugging Face Hub-compatible server for the real, unpatched clients.

Names are imported lazily so ``python -m nemo_hf.testing.local_hub`` runs the module once.

    >>> from nemo_hf.testing import start_local_hub
    >>> callable(start_local_hub)
    True
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_LAZY = {
    "LOCAL_HUB_TOKEN": "nemo_hf.testing.local_hub",
    "LOCAL_HUB_USER": "nemo_hf.testing.local_hub",
    "LocalHub": "nemo_hf.testing.local_hub",
    "start_local_hub": "nemo_hf.testing.local_hub",
}

__all__ = list(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'nemo_hf.testing' has no attribute {name!r}")
