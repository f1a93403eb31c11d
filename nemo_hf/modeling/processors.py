"""The processors of the segmenters: images stretched to a square, CLIP's tokenizer, an optional text length.

Both segmenters take images resized to a ``side × side`` square (CLIPSeg's processor
stretches; CRIS letterboxes, keeping the aspect ratio and padding, which this project
does not do: masks, NeMo mosaics and the collator's shortcut all assume the stretch) and
normalised with the CLIP's mean and std, and expressions through the CLIP's tokenizer.
The image processor is pinned to its PIL backend: with torchvision installed
``transformers`` would pick another resize implementation and metrics would depend on
what happens to be installed.

``text_length`` caps the tokens kept per expression (the tokenizer's
``model_max_length``, saved with it): CRIS keeps 17 for RefCOCO/RefCOCO+ and 22 for G-Ref.

    >>> from nemo_hf.mining import load_clip
    >>> _, clip_processor = load_clip("nemo-hf/synthetic-clip")
    >>> images = square_image_processor(clip_processor.image_processor, 96)
    >>> images.size["height"], type(images).__name__
    (96, 'ViTImageProcessorPil')
    >>> tokenizer = with_text_length(clip_processor.tokenizer, 5)
    >>> tokenizer(["the big red circle on the left"], truncation=True)["input_ids"][0].__len__()
    5
"""

from __future__ import annotations

import os
from typing import Any

from transformers import AutoImageProcessor, AutoTokenizer, ProcessorMixin
from transformers.models.vit.image_processing_pil_vit import ViTImageProcessorPil

__all__ = ["load_processor", "square_image_processor", "with_text_length"]


def square_image_processor(clip_image_processor: Any, side: int) -> ViTImageProcessorPil:
    """Stretch to ``side × side`` and normalise as ``clip_image_processor`` does (its mean, std and resampling)."""
    return ViTImageProcessorPil(
        size={"height": side, "width": side},
        image_mean=list(clip_image_processor.image_mean),
        image_std=list(clip_image_processor.image_std),
        resample=clip_image_processor.resample,
    )


def with_text_length(tokenizer: Any, text_length: int | None) -> Any:
    """``tokenizer`` keeping at most ``text_length`` tokens (start and end included); unchanged if None."""
    if text_length is not None:
        if text_length < 3:
            raise ValueError(f"text_length must leave room for a word between the start and end tokens, got {text_length}")
        tokenizer.model_max_length = int(text_length)
    return tokenizer


def load_processor(
    processor_class: type[ProcessorMixin], name: str | os.PathLike[str], revision: str | None = None,
    token: str | bool | None = None,
) -> ProcessorMixin:
    """A saved segmenter's processor: its image processor (PIL backend) and tokenizer, in ``processor_class``."""
    return processor_class(
        image_processor=AutoImageProcessor.from_pretrained(name, revision=revision, token=token, backend="pil"),
        tokenizer=AutoTokenizer.from_pretrained(name, revision=revision, token=token),
    )
