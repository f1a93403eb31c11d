"""Load a referring segmenter and its processor by name: a Hub id, a local folder or a shipped name.

``name_or_path`` (a shipped name such as ``nemo-hf/synthetic-clip`` is first resolved to
its folder, :mod:`nemo_hf.pretrained`) is either

- a CLIPSeg checkpoint on the Hub or on disk (``CIDAS/clipseg-rd64-refined``, the default
  of real runs, or the output folder of ``training/train.py``), loaded in float32 —
  ``from_pretrained`` would otherwise keep the checkpoint's dtype, and mixed precision is
  Accelerate's job; or
- a CLIP checkpoint, which becomes a CLIPSeg on its towers with a new decoder
  (:func:`~nemo_hf.modeling.from_clip.clipseg_from_clip`): the shipped
  ``nemo-hf/synthetic-clip`` gives a segmenter with nothing to download.

The image processor is pinned to its PIL backend: with torchvision installed
``transformers`` would pick another resize implementation and metrics would depend on
what happens to be installed.

>>> model, processor = load_referring_segmenter("nemo-hf/synthetic-clip", trainable="decoder", image_size=96)
>>> type(model).__name__, type(processor.image_processor).__name__, processor.image_processor.size["height"]
('CLIPSegReferringSegmenter', 'ViTImageProcessorPil', 96)
"""

from __future__ import annotations

from os import PathLike

import torch
from transformers import (
    AutoConfig,
    AutoImageProcessor,
    AutoTokenizer,
    CLIPSegForImageSegmentation,
    CLIPSegProcessor,
)

from nemo_hf.modeling.clipseg import CLIPSegReferringSegmenter, Trainable
from nemo_hf.modeling.from_clip import clipseg_from_clip
from nemo_hf.pretrained import resolve_pretrained

__all__ = ["DEFAULT_CHECKPOINT", "load_referring_segmenter"]

DEFAULT_CHECKPOINT = "CIDAS/clipseg-rd64-refined"


def load_referring_segmenter(
    name_or_path: str | PathLike = DEFAULT_CHECKPOINT,
    *,
    trainable: Trainable = "decoder",
    revision: str | None = None,
    token: str | bool | None = None,
    dtype: torch.dtype = torch.float32,
    image_size: int | None = None,
    seed: int = 0,
) -> tuple[CLIPSegReferringSegmenter, CLIPSegProcessor]:
    """The model behind :class:`~nemo_hf.modeling.ReferringSegmenter` and its processor.

    A CLIP checkpoint (``model_type`` ``"clip"``, e.g. ``nemo-hf/synthetic-clip``) becomes
    a CLIPSeg on its towers with a new decoder drawn from ``seed``, taking ``image_size``
    pixels (:func:`~nemo_hf.modeling.from_clip.clipseg_from_clip`). ``token`` reads a private
    Hub repository (default: ``HF_TOKEN`` or the login cache). Raises ``ValueError`` naming
    the checkpoint when it is neither CLIPSeg nor CLIP.
    """
    name = resolve_pretrained(name_or_path)
    revision = revision or "main"
    config = AutoConfig.from_pretrained(name, revision=revision, token=token)
    if config.model_type == "clip":
        model, processor = clipseg_from_clip(name, image_size=image_size, seed=seed, revision=revision)
        torch.nn.Module.to(model, dtype=dtype)
        return CLIPSegReferringSegmenter(model, trainable=trainable), processor
    if config.model_type != "clipseg":
        raise ValueError(
            f"{name!r} is a {config.model_type!r} checkpoint; nemo_hf.modeling supports CLIPSeg "
            f"(model_type 'clipseg', e.g. {DEFAULT_CHECKPOINT!r}) or a CLIP to build one on (model_type 'clip')"
        )
    model = CLIPSegForImageSegmentation.from_pretrained(name, revision=revision, token=token, dtype=dtype)
    processor = CLIPSegProcessor(
        image_processor=AutoImageProcessor.from_pretrained(name, revision=revision, token=token, backend="pil"),
        tokenizer=AutoTokenizer.from_pretrained(name, revision=revision, token=token),
    )
    return CLIPSegReferringSegmenter(model, trainable=trainable), processor
