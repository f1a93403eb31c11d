"""Load a referring segmenter and its processor by name: a Hub id, a local folder or a shipped name.

``name_or_path`` (a shipped name such as ``nemo-hf/synthetic-clip`` is first resolved to
its folder, :mod:`nemo_hf.pretrained`) is either

- a segmenter checkpoint on the Hub or on disk — CLIPSeg (``CIDAS/clipseg-rd64-refined``,
  the default of real runs) or CRIS (:class:`~nemo_hf.modeling.CRISForReferringSegmentation`),
  such as the output folder of ``training/train.py`` — loaded in float32:
  ``from_pretrained`` would otherwise keep the checkpoint's dtype, and mixed precision is
  Accelerate's job; or
- a CLIP checkpoint, on whose towers a new segmenter is built: a CLIPSeg by default
  (:func:`~nemo_hf.modeling.from_clip.clipseg_from_clip`) or, with ``model_type="cris"``, a
  CRIS (:meth:`~nemo_hf.modeling.CRISForReferringSegmentation.from_clip`). The shipped
  ``nemo-hf/synthetic-clip`` gives a segmenter with nothing to download.

The processor stretches images to a square and uses the CLIP's tokenizer
(:mod:`nemo_hf.modeling.processors`). What trains by default is each model's recipe:
CLIPSeg's decoder, all of CRIS.

>>> model, processor = load_referring_segmenter("nemo-hf/synthetic-clip", trainable="decoder", image_size=96)
>>> type(model).__name__, type(processor.image_processor).__name__, processor.image_processor.size["height"]
('CLIPSegReferringSegmenter', 'ViTImageProcessorPil', 96)
>>> model, processor = load_referring_segmenter("nemo-hf/synthetic-clip", model_type="cris", text_length=17)
>>> type(model).__name__, model.trainable, processor.tokenizer.model_max_length
('CRISReferringSegmenter', 'all', 17)
"""

from __future__ import annotations

from os import PathLike
from typing import Literal, get_args

import torch
from transformers import (
    AutoConfig,
    CLIPProcessor,
    CLIPSegForImageSegmentation,
    CLIPSegProcessor,
    ProcessorMixin,
)

from nemo_hf.mining.clip import load_clip
from nemo_hf.modeling.clipseg import CLIPSegReferringSegmenter
from nemo_hf.modeling.cris import CRISForReferringSegmentation, CRISReferringSegmenter
from nemo_hf.modeling.from_clip import clipseg_from_clip
from nemo_hf.modeling.parts import PartwiseSegmenter, Trainable
from nemo_hf.modeling.processors import load_processor, square_image_processor, with_text_length
from nemo_hf.pretrained import resolve_pretrained

__all__ = ["DEFAULT_CHECKPOINT", "SEGMENTER_TYPES", "SegmenterType", "load_referring_segmenter"]

DEFAULT_CHECKPOINT = "CIDAS/clipseg-rd64-refined"

SegmenterType = Literal["clipseg", "cris"]
SEGMENTER_TYPES: tuple[str, ...] = get_args(SegmenterType)
# a segmenter checkpoint's config.model_type -> the segmenter it holds
_CHECKPOINT_SEGMENTERS = {"clipseg": "clipseg", "nemo_cris": "cris"}


def load_referring_segmenter(
    name_or_path: str | PathLike = DEFAULT_CHECKPOINT,
    *,
    model_type: SegmenterType | None = None,
    trainable: Trainable | None = None,
    revision: str | None = None,
    token: str | bool | None = None,
    dtype: torch.dtype = torch.float32,
    image_size: int | None = None,
    text_length: int | None = None,
    seed: int = 0,
) -> tuple[PartwiseSegmenter, ProcessorMixin]:
    """The model behind :class:`~nemo_hf.modeling.ReferringSegmenter` and its processor.

    A CLIP checkpoint (``model_type`` ``"clip"`` in its config, e.g. ``nemo-hf/synthetic-clip``)
    becomes the segmenter ``model_type`` names (``"clipseg"`` if None) on its towers, its new
    layers drawn from ``seed``, taking ``image_size`` pixels (default: the CLIP's). A
    segmenter checkpoint is loaded as what it is; a ``model_type`` that names another is an
    error. ``trainable`` (default: the model's recipe) selects the parts that train;
    ``text_length`` caps the tokens per expression; ``token`` reads a private Hub repository
    (default: ``HF_TOKEN`` or the login cache). Raises ``ValueError`` naming the
    checkpoint when it is neither CLIPSeg, CRIS nor CLIP.
    """
    if model_type is not None and model_type not in SEGMENTER_TYPES:
        raise ValueError(f"model_type must be one of {SEGMENTER_TYPES}, got {model_type!r}")
    name = resolve_pretrained(name_or_path)
    revision = revision or "main"
    config = AutoConfig.from_pretrained(name, revision=revision, token=token)
    if config.model_type == "clip":
        segmenter = model_type or "clipseg"
        clip, clip_processor = load_clip(name, revision=revision)
        if segmenter == "cris":
            model = CRISForReferringSegmentation.from_clip(clip, seed=seed)
            side = int(image_size or clip.config.vision_config.image_size)
            processor = CLIPProcessor(image_processor=square_image_processor(clip_processor.image_processor, side),
                                      tokenizer=clip_processor.tokenizer)
        else:
            model, processor = clipseg_from_clip((clip, clip_processor), image_size=image_size, seed=seed)
        torch.nn.Module.to(model, dtype=dtype)
    else:
        segmenter = _CHECKPOINT_SEGMENTERS.get(config.model_type)
        if segmenter is None:
            raise ValueError(
                f"{name!r} is a {config.model_type!r} checkpoint; nemo_hf.modeling supports CLIPSeg "
                f"(model_type 'clipseg', e.g. {DEFAULT_CHECKPOINT!r}), CRIS ('nemo_cris') or a CLIP to build "
                "one on ('clip')"
            )
        if model_type not in (None, segmenter):
            raise ValueError(f"{name!r} is a {segmenter} checkpoint, not {model_type}: model_type chooses the "
                             "segmenter built on a CLIP checkpoint only")
        model_class, processor_class = ((CLIPSegForImageSegmentation, CLIPSegProcessor) if segmenter == "clipseg"
                                        else (CRISForReferringSegmentation, CLIPProcessor))
        model = model_class.from_pretrained(name, revision=revision, token=token, dtype=dtype)
        processor = load_processor(processor_class, name, revision=revision, token=token)
    with_text_length(processor.tokenizer, text_length)
    adapter = CLIPSegReferringSegmenter if segmenter == "clipseg" else CRISReferringSegmenter
    return (adapter(model) if trainable is None else adapter(model, trainable)), processor
