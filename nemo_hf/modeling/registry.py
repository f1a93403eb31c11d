"""The one registry of segmenter architectures: loading, ``train.py --model_type``, the experiment and cards read it.

    >>> SEGMENTER_TYPES
    ('clipseg', 'cris')
    >>> architecture_of_checkpoint("nemo_cris").name, architecture_of_class("CLIPSegForImageSegmentation").name
    ('cris', 'clipseg')
    >>> architecture("unet")
    Traceback (most recent call last):
    ...
    ValueError: unknown segmenter 'unet': nemo_hf.modeling supports 'clipseg' (CLIPSeg), 'cris' (CRIS)
"""

from __future__ import annotations

from nemo_hf.modeling.architecture import Architecture
from nemo_hf.modeling.clipseg import CLIPSEG
from nemo_hf.modeling.cris.segmenter import CRIS

__all__ = ["ARCHITECTURES", "SEGMENTER_TYPES", "architecture", "architecture_of_checkpoint", "architecture_of_class",
           "supported"]

ARCHITECTURES: dict[str, Architecture] = {arch.name: arch for arch in (CLIPSEG, CRIS)}
SEGMENTER_TYPES: tuple[str, ...] = tuple(ARCHITECTURES)


def supported() -> str:
    """The supported architectures, for error messages."""
    return ", ".join(f"{name!r} ({arch.display_name})" for name, arch in ARCHITECTURES.items())


def architecture(name: str) -> Architecture:
    """The architecture of a ``model_type`` choice (``"clipseg"``, ``"cris"``)."""
    if name not in ARCHITECTURES:
        raise ValueError(f"unknown segmenter {name!r}: nemo_hf.modeling supports {supported()}")
    return ARCHITECTURES[name]


def architecture_of_checkpoint(model_type: str) -> Architecture | None:
    """The architecture whose checkpoints have ``config.model_type == model_type``, or None."""
    return next((arch for arch in ARCHITECTURES.values() if model_type in arch.checkpoint_model_types), None)


def architecture_of_class(class_name: str) -> Architecture | None:
    """The architecture whose model class is named ``class_name`` (``config.json``'s ``architectures``), or None."""
    return next((arch for arch in ARCHITECTURES.values() if arch.model_class.__name__ == class_name), None)
