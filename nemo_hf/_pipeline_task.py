"""Register the ``referring-image-segmentation`` task with transformers' pipelines as soon as they load.

``import nemo_hf`` must stay cheap (about 40 ms) and must not import huggingface_hub, whose
endpoint is fixed at import time; ``transformers.pipelines`` takes seconds to import and
does. So the registration waits: if transformers' pipelines are already imported, it
happens now; otherwise an import hook runs it right after they are, before
``transformers.pipeline(…)`` can look the task up. Registering is importing
:mod:`nemo_hf.modeling.pipeline`, which ends by calling ``PIPELINE_REGISTRY.register_pipeline``.

    >>> import sys, transformers
    >>> install()
    >>> segmentation = transformers.pipeline  # the first use imports transformers.pipelines: the hook runs
    >>> "referring-image-segmentation" in sys.modules["transformers.pipelines"].PIPELINE_REGISTRY.get_supported_tasks()
    True
"""

from __future__ import annotations

import importlib
import importlib.abc
import sys
from importlib.machinery import ModuleSpec
from types import ModuleType
from typing import Any

__all__ = ["install"]

_PIPELINES = "transformers.pipelines"
_REGISTERING_MODULE = "nemo_hf.modeling.pipeline"


class _RegisteringLoader(importlib.abc.Loader):
    """transformers.pipelines' own loader, then the registration."""

    def __init__(self, loader: Any) -> None:
        self._loader = loader

    def create_module(self, spec: ModuleSpec) -> ModuleType | None:
        return self._loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        self._loader.exec_module(module)
        # mid-import already (it imported transformers.pipelines first)? it registers when it ends
        importlib.import_module(_REGISTERING_MODULE)

    def __getattr__(self, name: str) -> Any:  # get_source, is_package, … of the real loader
        return getattr(self._loader, name)


class _AfterPipelinesImport(importlib.abc.MetaPathFinder):
    """Finds transformers.pipelines with the other finders and wraps its loader, once."""

    def find_spec(self, fullname: str, path: Any, target: ModuleType | None = None) -> ModuleSpec | None:
        if fullname != _PIPELINES:
            return None
        sys.meta_path.remove(self)
        for finder in sys.meta_path:
            spec = finder.find_spec(fullname, path, target) if hasattr(finder, "find_spec") else None
            if spec is not None and spec.loader is not None:
                spec.loader = _RegisteringLoader(spec.loader)
                return spec
        return None


def install() -> None:
    """Register the task now if transformers' pipelines are loaded, else right after they load (idempotent)."""
    if _PIPELINES in sys.modules:
        importlib.import_module(_REGISTERING_MODULE)
    elif not any(isinstance(finder, _AfterPipelinesImport) for finder in sys.meta_path):
        sys.meta_path.insert(0, _AfterPipelinesImport())
