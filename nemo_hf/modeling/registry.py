"""The one registry of segmenter architectures: loading, the pipeline, evaluation, training, the experiment and cards.

Running (the pipeline, ``nemo-hf predict``, ``training/eval_ris.py``, the explorer) takes
every entry; training (``train.py --model_type``, the experiment) those that train.

    >>> SEGMENTER_TYPES, TRAINABLE_SEGMENTER_TYPES
    (('clipseg', 'cris', 'florence2'), ('clipseg', 'cris'))
    >>> architecture_of_checkpoint("nemo_cris").name, architecture_of_class("CLIPSegForImageSegmentation").name
    ('cris', 'clipseg')
    >>> architecture("unet")
    Traceback (most recent call last):
    ...
    ValueError: unknown segmenter 'unet': nemo_hf.modeling supports 'clipseg' (CLIPSeg), 'cris' (CRIS), 'florence2' ...
"""

from __future__ import annotations

from nemo_hf.modeling.architecture import Architecture
from nemo_hf.modeling.clipseg import CLIPSEG
from nemo_hf.modeling.cris.segmenter import CRIS
from nemo_hf.modeling.florence2 import FLORENCE2

__all__ = ["ARCHITECTURES", "SEGMENTER_TYPES", "TRAINABLE_SEGMENTER_TYPES", "architecture",
           "architecture_of_checkpoint", "architecture_of_class", "supported"]

ARCHITECTURES: dict[str, Architecture] = {arch.name: arch for arch in (CLIPSEG, CRIS, FLORENCE2)}
SEGMENTER_TYPES: tuple[str, ...] = tuple(ARCHITECTURES)
TRAINABLE_SEGMENTER_TYPES: tuple[str, ...] = tuple(name for name, arch in ARCHITECTURES.items() if arch.trains)


def supported(trainable: bool = False) -> str:
    """The supported architectures (those that train, with ``trainable``), for error messages.

    >>> supported(trainable=True)
    "'clipseg' (CLIPSeg), 'cris' (CRIS)"
    """
    return ", ".join(f"{name!r} ({arch.display_name})" for name, arch in ARCHITECTURES.items()
                     if arch.trains or not trainable)


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
