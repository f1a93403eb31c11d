"""Load a referring segmenter and its processor by name: a Hub id, a local folder or a factory key.

``name_or_path`` is either

- a CLIPSeg checkpoint on the Hub or on disk (``CIDAS/clipseg-rd64-refined``, the default
  of real runs, or the output folder of ``training/train.py``), loaded in float32 —
  ``from_pretrained`` would otherwise keep the checkpoint's dtype, and mixed precision is
  Accelerate's job; or
- a key of :data:`LOCAL_FACTORIES`, a model built in code with no download:
  ``tiny-clipseg`` is :func:`nemo_hf.testing.tiny_clipseg.tiny_clipseg` (seed 0), used by
  the CPU config and the tests.

The image processor is pinned to its PIL backend: with torchvision installed
``transformers`` would pick another resize implementation and metrics would depend on
what happens to be installed.

>>> model, processor = load_referring_segmenter("tiny-clipseg", trainable="decoder")
>>> type(model).__name__, type(processor.image_processor).__name__
('CLIPSegReferringSegmenter', 'ViTImageProcessorPil')
"""

from __future__ import annotations

from collections.abc import Callable
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

__all__ = ["DEFAULT_CHECKPOINT", "LOCAL_FACTORIES", "load_referring_segmenter"]

DEFAULT_CHECKPOINT = "CIDAS/clipseg-rd64-refined"


def _tiny_clipseg() -> tuple[CLIPSegForImageSegmentation, CLIPSegProcessor]:
    from nemo_hf.testing.tiny_clipseg import tiny_clipseg

    return tiny_clipseg(seed=0)


LOCAL_FACTORIES: dict[str, Callable[[], tuple[CLIPSegForImageSegmentation, CLIPSegProcessor]]] = {
    "tiny-clipseg": _tiny_clipseg,
}


def load_referring_segmenter(
    name_or_path: str | PathLike = DEFAULT_CHECKPOINT,
    *,
    trainable: Trainable = "decoder",
    revision: str | None = None,
    dtype: torch.dtype = torch.float32,
    image_size: int | None = None,
    seed: int = 0,
) -> tuple[CLIPSegReferringSegmenter, CLIPSegProcessor]:
    """The model behind :class:`~nemo_hf.modeling.ReferringSegmenter` and its processor.

    A CLIP checkpoint (``model_type`` ``"clip"``, e.g. ``nemo-hf/synthetic-clip``) becomes
    a CLIPSeg on its towers with a new decoder drawn from ``seed``, taking ``image_size``
    pixels (:func:`~nemo_hf.modeling.from_clip.clipseg_from_clip`). Raises ``ValueError``
    naming the checkpoint when it is neither CLIPSeg nor CLIP.
    """
    name = resolve_pretrained(name_or_path)
    if name in LOCAL_FACTORIES:
        model, processor = LOCAL_FACTORIES[name]()
        torch.nn.Module.to(model, dtype=dtype)
        return CLIPSegReferringSegmenter(model, trainable=trainable), processor
    revision = revision or "main"
    config = AutoConfig.from_pretrained(name, revision=revision)
    if config.model_type == "clip":
        model, processor = clipseg_from_clip(name, image_size=image_size, seed=seed, revision=revision)
        torch.nn.Module.to(model, dtype=dtype)
        return CLIPSegReferringSegmenter(model, trainable=trainable), processor
    if config.model_type != "clipseg":
        raise ValueError(
            f"{name!r} is a {config.model_type!r} checkpoint; nemo_hf.modeling supports CLIPSeg "
            f"(model_type 'clipseg', e.g. {DEFAULT_CHECKPOINT!r}), a CLIP to build one on (model_type 'clip') or a local factory key {sorted(LOCAL_FACTORIES)}"
        )
    model = CLIPSegForImageSegmentation.from_pretrained(name, revision=revision, dtype=dtype)
    processor = CLIPSegProcessor(
        image_processor=AutoImageProcessor.from_pretrained(name, revision=revision, backend="pil"),
        tokenizer=AutoTokenizer.from_pretrained(name, revision=revision),
    )
    return CLIPSegReferringSegmenter(model, trainable=trainable), processor
