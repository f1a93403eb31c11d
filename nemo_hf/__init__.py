"""nemo_hf — NeMo (Negative-mined Mosaic augmentation, ECCV 2024) on the Hugging Face stack.

Not NVIDIA's NeMo toolkit: this package implements the referring-image-segmentation
augmentation of Ha et al., "Finding NeMo" (ECCV 2024).

Heavy parts are imported lazily so ``import nemo_hf`` stays cheap; it also registers the
``referring-image-segmentation`` task with ``transformers.pipeline`` (as soon as transformers'
pipelines are imported), whose models :func:`pipeline` loads by Hub id or folder::

    >>> import nemo_hf
    >>> nemo_hf.__version__
    '0.1.0'
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from nemo_hf import _pipeline_task

__version__ = "0.1.0"

_LAZY = {
    "load_refcoco": "nemo_hf.data.load",
    "per_sentence": "nemo_hf.data.load",
    "RefCOCO": "nemo_hf.data.builder",
    "NeMo": "nemo_hf.nemo",
    "NeMoSettings": "nemo_hf.nemo",
    "RISMetrics": "nemo_hf.metrics",
    "GRESMetrics": "nemo_hf.metrics",
    "pipeline": "nemo_hf.modeling.pipeline",
}

__all__ = ["__version__", *_LAZY]

# transformers.pipeline("referring-image-segmentation", …) works once nemo_hf is imported
_pipeline_task.install()


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'nemo_hf' has no attribute {name!r}")
