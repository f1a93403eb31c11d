"""nemo_hf — NeMo (Negative-mined Mosaic augmentation, ECCV 2024) on the Hugging Face stack.

Not NVIDIA's NeMo toolkit: this package implements the referring-image-segmentation
augmentation of Ha et al., "Finding NeMo" (ECCV 2024).

The names below are the user-facing shortcuts; each lives in the module named beside it,
and library code imports it from there. They are imported on first use, so ``import
nemo_hf`` stays cheap (no torch, no transformers) and changes no import machinery.
Importing :mod:`nemo_hf.modeling` registers the project's models with ``transformers``'
Auto classes and the ``referring-image-segmentation`` task with ``transformers.pipeline``
(:func:`pipeline` imports it for you)::

    >>> import nemo_hf
    >>> nemo_hf.__version__
    '0.1.0'
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from nemo_hf.version import __version__

if TYPE_CHECKING:  # what type checkers and "go to definition" follow
    from nemo_hf.data.builder import RefCOCO as RefCOCO
    from nemo_hf.data.load import load_refcoco as load_refcoco, per_sentence as per_sentence
    from nemo_hf.metrics.gres import GRESMetrics as GRESMetrics
    from nemo_hf.metrics.ris import RISMetrics as RISMetrics
    from nemo_hf.modeling.pipeline import pipeline as pipeline
    from nemo_hf.nemo.settings import NeMoSettings as NeMoSettings
    from nemo_hf.nemo.transform import NeMo as NeMo

_LAZY = {
    "load_refcoco": "nemo_hf.data.load",
    "per_sentence": "nemo_hf.data.load",
    "RefCOCO": "nemo_hf.data.builder",
    "NeMo": "nemo_hf.nemo.transform",
    "NeMoSettings": "nemo_hf.nemo.settings",
    "RISMetrics": "nemo_hf.metrics.ris",
    "GRESMetrics": "nemo_hf.metrics.gres",
    "pipeline": "nemo_hf.modeling.pipeline",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'nemo_hf' has no attribute {name!r}")
