"""The losses of referring segmentation: per-pixel BCE and soft Dice, per sample, and the configured sum.

Labels may come at the logits' resolution or at a whole multiple of it (the input's, as
:class:`~nemo_hf.modeling.inputs.RISCollator` makes them): each block of labels is averaged
into one (:func:`labels_at`), so a label stays the share of its output pixel that the object
covers. A model's ``config.segmentation_loss`` names its training loss
(:data:`SEGMENTATION_LOSSES`), which :func:`segmentation_loss` computes.

>>> import torch
>>> logits, labels = torch.zeros(2, 4, 4), torch.ones(2, 4, 4)
>>> per_sample_bce(logits, labels)
tensor([0.6931, 0.6931])
>>> segmentation_loss(logits, labels, "bce+dice").item() > segmentation_loss(logits, labels, "bce").item()
True
"""

from __future__ import annotations

from typing import Literal, get_args

import torch
import torch.nn.functional as F

__all__ = ["SEGMENTATION_LOSSES", "SegmentationLoss", "labels_at", "per_sample_bce", "per_sample_dice",
           "segmentation_loss"]

SegmentationLoss = Literal["bce", "bce+dice"]
SEGMENTATION_LOSSES: tuple[str, ...] = get_args(SegmentationLoss)


def segmentation_loss(logits: torch.Tensor, labels: torch.Tensor, kind: str = "bce") -> torch.Tensor:
    """The training loss ``kind`` of a batch: mean per-sample BCE, plus mean per-sample Dice for ``"bce+dice"``.

    ``"bce"`` is CLIPSeg's and CRIS's loss; the Dice term weighs a small object as much as
    a large one (the synthetic world's segmenters train with it).

    >>> import torch
    >>> segmentation_loss(torch.zeros(1, 2, 2), torch.zeros(1, 2, 2), "dice")
    Traceback (most recent call last):
    ...
    ValueError: segmentation_loss must be one of ('bce', 'bce+dice'), got 'dice'
    """
    if kind not in SEGMENTATION_LOSSES:
        raise ValueError(f"segmentation_loss must be one of {SEGMENTATION_LOSSES}, got {kind!r}")
    loss = per_sample_bce(logits, labels).mean()
    if kind == "bce+dice":
        loss = loss + per_sample_dice(logits, labels).mean()
    return loss


def labels_at(labels: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Labels ``(B, H, W)`` brought to ``size`` = ``(h, w)``: unchanged, or each ``H/h × W/w`` block averaged.

    ``H`` and ``W`` must be whole multiples of ``h`` and ``w``; anything else is an error,
    since labels made for another model's resolution are a bug, not something to resample.

    >>> import torch
    >>> labels = torch.zeros(1, 4, 4); labels[0, :2, :1] = 1
    >>> labels_at(labels, (2, 2))
    tensor([[[0.5000, 0.0000],
             [0.0000, 0.0000]]])
    """
    height, width = labels.shape[-2:]
    if (height, width) == tuple(size):
        return labels
    if labels.ndim != 3 or height % size[0] or width % size[1]:
        raise ValueError(
            f"labels {tuple(labels.shape)} do not fit logits of size {tuple(size)}; the labels must be "
            "resized to the model's output resolution or a whole multiple of it (see nemo_hf.modeling.RISCollator)"
        )
    return F.avg_pool2d(labels.float().unsqueeze(1), (height // size[0], width // size[1])).squeeze(1)


def per_sample_bce(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy of each sample, averaged over its pixels: shape ``(B,)``, float32.

    ``labels`` are targets in [0, 1] at the logits' resolution or a whole multiple of it
    (:func:`labels_at`; soft at mask edges when a mask was downsampled). The mean of the
    result is CLIPSeg's and CRIS's training loss; keeping it per sample lets evaluation
    average it exactly over a split on any number of processes.

    >>> import torch
    >>> per_sample_bce(torch.tensor([[[10.0]]]), torch.tensor([[[1.0]]])) < 1e-4
    tensor([True])
    """
    labels = _labels_for(logits, labels)
    # float32: BCE on half-precision logits loses the small gradients of confident pixels
    loss = F.binary_cross_entropy_with_logits(logits.float(), labels.float(), reduction="none")
    return loss.flatten(1).mean(dim=1)


def per_sample_dice(logits: torch.Tensor, labels: torch.Tensor, smooth: float = 1.0) -> torch.Tensor:
    """Soft Dice loss of each sample, ``1 - (2|p∩y| + s) / (|p| + |y| + s)``: shape ``(B,)``, float32.

    Unlike BCE, which averages over pixels, it weighs a small object as much as a large
    one, so a model cannot win by predicting background everywhere. ``smooth`` keeps an
    empty target with an empty prediction at 0. ``labels`` as for :func:`per_sample_bce`.

    >>> import torch
    >>> labels = torch.zeros(2, 4, 4); labels[:, :2, :2] = 1
    >>> per_sample_dice(torch.where(labels > 0, 20.0, -20.0), labels)
    tensor([0., 0.])
    >>> per_sample_dice(torch.full((1, 4, 4), -20.0), labels[:1]).round(decimals=2)
    tensor([0.8000])
    """
    labels = _labels_for(logits, labels)
    probs = torch.sigmoid(logits.float()).flatten(1)
    target = labels.float().flatten(1)
    overlap = (probs * target).sum(dim=1)
    return 1 - (2 * overlap + smooth) / (probs.sum(dim=1) + target.sum(dim=1) + smooth)


def _labels_for(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """``labels`` at the logits' size (:func:`labels_at`), after checking that the batches agree."""
    if logits.ndim != 3 or labels.shape[:-2] != logits.shape[:-2]:
        raise ValueError(f"logits {tuple(logits.shape)} and labels {tuple(labels.shape)} must both be (B, h, w) "
                         "with the same batch")
    return labels_at(labels, tuple(logits.shape[-2:]))
