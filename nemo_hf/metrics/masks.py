"""Per-sample pixel counts of binary masks: the only thing the RIS metrics need from a mask.

Masks come as a batch (an ``(N, H, W)`` array or tensor) or as a list of ``(H, W)`` masks
of different sizes (one per image, at the image's original resolution). ``bool`` masks
are taken as they are; integer masks count every non-zero pixel as foreground (so the
dataset's 0/255 masks work); float masks are refused, because they are probabilities or
logits that must be thresholded first (:func:`nemo_hf.metrics.logits_to_mask`).

Counts are int64 and computed where the masks live (a CUDA batch stays on its device;
only the counts move), so summing them is exact on any number of processes.

>>> import numpy as np
>>> pred = np.array([[[1, 1], [0, 0]]], dtype=bool)
>>> gt = np.array([[[1, 0], [1, 0]]], dtype=bool)
>>> counts = pixel_counts(pred, gt)
>>> counts.intersection.tolist(), counts.union.tolist()
([1], [3])
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import torch

Mask = np.ndarray | torch.Tensor
Masks = np.ndarray | torch.Tensor | Sequence[Mask]
Counts = np.ndarray | torch.Tensor


class PixelCounts(NamedTuple):
    """Per-sample int64 counts; numpy arrays, or torch tensors when any input was a tensor."""

    intersection: Counts
    union: Counts
    pred_area: Counts
    target_area: Counts


def _check_dtype(mask: Mask, where: str) -> None:
    if isinstance(mask, torch.Tensor):
        bad = mask.is_floating_point() or mask.is_complex()
    else:
        bad = not (mask.dtype == np.bool_ or np.issubdtype(mask.dtype, np.integer))
    if bad:
        raise TypeError(
            f"{where} has dtype {mask.dtype}; masks must be bool (or integer, non-zero = foreground). "
            "Threshold probabilities or logits first, e.g. with nemo_hf.metrics.logits_to_mask."
        )


def _as_bool(mask: Mask) -> Mask:
    if isinstance(mask, torch.Tensor):
        return mask if mask.dtype == torch.bool else mask != 0
    return mask if mask.dtype == np.bool_ else mask != 0


def _mask_list(masks: Masks, name: str) -> list[Mask] | Mask:
    """A 3-D batch unchanged, or a list of 2-D masks; anything else is an error naming ``name``."""
    if isinstance(masks, (np.ndarray, torch.Tensor)):
        if masks.ndim != 3:
            raise ValueError(
                f"{name} has shape {tuple(masks.shape)}; pass a batch (N, H, W) or a list of (H, W) "
                "masks (for one mask, add a batch axis: mask[None])"
            )
        _check_dtype(masks, name)
        return _as_bool(masks)
    if isinstance(masks, (str, bytes)) or not isinstance(masks, Sequence):
        raise TypeError(f"{name} must be an array, a tensor or a list of masks, got {type(masks).__name__}")
    out = []
    for i, mask in enumerate(masks):
        if not isinstance(mask, (np.ndarray, torch.Tensor)):
            mask = np.asarray(mask)
        if mask.ndim != 2:
            raise ValueError(f"{name}[{i}] has shape {tuple(mask.shape)}; each mask must be (H, W)")
        _check_dtype(mask, f"{name}[{i}]")
        out.append(_as_bool(mask))
    return out


def _device(masks: list[Mask] | Mask) -> torch.device | None:
    items = masks if isinstance(masks, list) else [masks]
    return next((m.device for m in items if isinstance(m, torch.Tensor)), None)


def _torch_counts(pred: Mask, target: Mask, device: torch.device) -> torch.Tensor:
    pred_t, target_t = torch.as_tensor(pred, device=device), torch.as_tensor(target, device=device)
    areas = [pred_t & target_t, pred_t, target_t]
    return torch.stack([m.sum(dim=(-2, -1), dtype=torch.int64) for m in areas])


def _numpy_counts(pred: Mask, target: Mask) -> np.ndarray:
    pred_a, target_a = np.asarray(pred), np.asarray(target)
    areas = [pred_a & target_a, pred_a, target_a]
    return np.stack([m.sum(axis=(-2, -1), dtype=np.int64) for m in areas])


def pixel_counts(preds: Masks, targets: Masks) -> PixelCounts:
    """Intersection, union and both areas of each (prediction, target) pair, as int64.

    ``preds`` and ``targets`` are each a ``(N, H, W)`` batch or a list of ``(H, W)`` masks;
    pair ``i`` must have one shape. The result holds torch tensors (on the first tensor's
    device) when any input is a tensor, numpy arrays otherwise — tensors so that they can go
    through ``accelerator.gather_for_metrics``.

    >>> import torch
    >>> preds = [torch.ones(2, 3, dtype=torch.bool), torch.zeros(4, 4, dtype=torch.bool)]
    >>> targets = [torch.eye(2, 3, dtype=torch.bool), torch.zeros(4, 4, dtype=torch.bool)]
    >>> pixel_counts(preds, targets).union.tolist()
    [6, 0]
    """
    pred_list, target_list = _mask_list(preds, "preds"), _mask_list(targets, "targets")
    if len(pred_list) != len(target_list):
        raise ValueError(f"got {len(pred_list)} predictions but {len(target_list)} targets")
    device = _device(pred_list)
    if device is None:
        device = _device(target_list)
    counts: Counts  # rows: intersection, prediction area, target area
    if not isinstance(pred_list, list) and not isinstance(target_list, list):
        if tuple(pred_list.shape) != tuple(target_list.shape):
            raise ValueError(f"preds shape {tuple(pred_list.shape)} != targets shape {tuple(target_list.shape)}")
        counts = (
            _numpy_counts(pred_list, target_list) if device is None else _torch_counts(pred_list, target_list, device)
        )
    else:
        pairs = list(zip(pred_list, target_list))
        for i, (pred, target) in enumerate(pairs):
            if tuple(pred.shape) != tuple(target.shape):
                raise ValueError(
                    f"sample {i}: prediction shape {tuple(pred.shape)} != target shape {tuple(target.shape)}; "
                    "resize the prediction to the original image size first (nemo_hf.metrics.logits_to_mask)"
                )
        if device is None:
            counts = np.stack([_numpy_counts(*pair) for pair in pairs], axis=1) if pairs else np.zeros((3, 0), np.int64)
        elif pairs:
            counts = torch.stack([_torch_counts(*pair, device) for pair in pairs], dim=1)
        else:
            counts = torch.zeros((3, 0), dtype=torch.int64, device=device)
    inter, pred_area, target_area = counts[0], counts[1], counts[2]
    return PixelCounts(inter, pred_area + target_area - inter, pred_area, target_area)
