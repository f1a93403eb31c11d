"""The one interface every referring segmentation model here follows, and its loss.

A model maps a batch of images and one expression per image to mask logits::

    logits = model(pixel_values=..., input_ids=..., attention_mask=...)   # (B, h, w)

``pixel_values`` ``(B, 3, H, W)`` and the token tensors ``(B, T)`` are what the model's
processor returns; ``logits`` are per-pixel scores at the model's output resolution
(``sigmoid(logit) > 0.5`` is foreground). Training and evaluation code depend on nothing
else, so another model (LAVT, CRIS, …) plugs in by following this protocol and saving
itself with ``save_pretrained``.

>>> import torch
>>> logits, labels = torch.zeros(2, 4, 4), torch.ones(2, 4, 4)
>>> per_sample_bce(logits, labels)
tensor([0.6931, 0.6931])
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol, runtime_checkable

import torch
import torch.nn.functional as F

__all__ = ["ReferringSegmenter", "per_sample_bce", "per_sample_dice"]


@runtime_checkable
class ReferringSegmenter(Protocol):
    """``(pixel_values, input_ids, attention_mask) → (B, h, w)`` mask logits, and ``save_pretrained``."""

    def __call__(
        self, pixel_values: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> torch.Tensor: ...

    def save_pretrained(self, save_directory: str | Path) -> None: ...


def per_sample_bce(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy of each sample, averaged over its pixels: shape ``(B,)``, float32.

    ``labels`` are targets in [0, 1] at the logits' resolution (soft at mask edges when a
    mask was downsampled). The mean of the result is CLIPSeg's own training loss; keeping
    it per sample lets evaluation average it exactly over a split on any number of
    processes.

    >>> import torch
    >>> per_sample_bce(torch.tensor([[[10.0]]]), torch.tensor([[[1.0]]])) < 1e-4
    tensor([True])
    """
    if logits.shape != labels.shape:
        raise ValueError(
            f"logits {tuple(logits.shape)} and labels {tuple(labels.shape)} differ; the labels must be "
            "resized to the model's output resolution (see nemo_hf.modeling.RISCollator)"
        )
    # float32: BCE on half-precision logits loses the small gradients of confident pixels
    loss = F.binary_cross_entropy_with_logits(logits.float(), labels.float(), reduction="none")
    return loss.flatten(1).mean(dim=1)


def per_sample_dice(logits: torch.Tensor, labels: torch.Tensor, smooth: float = 1.0) -> torch.Tensor:
    """Soft Dice loss of each sample, ``1 - (2|p∩y| + s) / (|p| + |y| + s)``: shape ``(B,)``, float32.

    Unlike BCE, which averages over pixels, it weighs a small object as much as a large
    one, so a model cannot win by predicting background everywhere. ``smooth`` keeps an
    empty target with an empty prediction at 0.

    >>> import torch
    >>> labels = torch.zeros(2, 4, 4); labels[:, :2, :2] = 1
    >>> per_sample_dice(torch.where(labels > 0, 20.0, -20.0), labels)
    tensor([0., 0.])
    >>> per_sample_dice(torch.full((1, 4, 4), -20.0), labels[:1]).round(decimals=2)
    tensor([0.8000])
    """
    if logits.shape != labels.shape:
        raise ValueError(f"logits {tuple(logits.shape)} and labels {tuple(labels.shape)} differ")
    probs = torch.sigmoid(logits.float()).flatten(1)
    target = labels.float().flatten(1)
    overlap = (probs * target).sum(dim=1)
    return 1 - (2 * overlap + smooth) / (probs.sum(dim=1) + target.sum(dim=1) + smooth)
