"""The one interface every referring segmentation model here follows.

A model maps a batch of images and one expression per image to mask logits, and with
``labels`` also to its training loss::

    output = model(pixel_values=..., input_ids=..., attention_mask=..., labels=...)
    output.logits   # (B, h, w)
    output.loss     # a scalar: the loss of the model's config (nemo_hf.modeling.losses), None without labels

``pixel_values`` ``(B, 3, H, W)`` and the token tensors ``(B, T)`` are what the model's
processor returns; ``logits`` are per-pixel scores at the model's output resolution
(``sigmoid(logit) > 0.5`` is foreground): the input's for CLIPSeg, a quarter of it for CRIS;
``labels`` ``(B, H', W')`` are masks in [0, 1] at that resolution or a whole multiple of it.
Training depends on nothing else, so another trainable model plugs in by following this
protocol and saving itself with ``save_pretrained``. Running a model (the pipeline,
evaluation, the explorer) goes through the inference protocol of
:mod:`nemo_hf.modeling.inference`, which a model that outputs masks rather than logits
(Florence-2) follows alone.

>>> import torch
>>> ReferringSegmenterOutput(logits=torch.zeros(1, 2, 2)).loss is None
True
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

import torch
from transformers.utils import ModelOutput

__all__ = ["ReferringSegmenter", "ReferringSegmenterOutput"]


@dataclass
class ReferringSegmenterOutput(ModelOutput):
    """``logits`` ``(B, h, w)`` per pixel; ``loss`` (the config's training loss) when labels were given."""

    loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None


@runtime_checkable
class ReferringSegmenter(Protocol):
    """``(pixel_values, input_ids, attention_mask[, labels]) → ReferringSegmenterOutput``, and ``save_pretrained``."""

    def __call__(
        self, pixel_values: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor,
        labels: torch.Tensor | None = None,
    ) -> ReferringSegmenterOutput: ...

    def save_pretrained(self, save_directory: str | Path) -> None: ...
