"""Rows of a referring segmentation dataset → a model batch (a ``DataLoader`` ``collate_fn``).

Rows hold ``image`` (PIL), ``mask`` (PIL mode ``"1"``/``"L"`` or an array; non-zero is the
object) and ``sentence`` — the per-sentence view of the dataset and the rows of the NeMo
transform alike. The batch holds what the model and the loss need:

- ``pixel_values``, ``input_ids``, ``attention_mask`` from the processor (images stretched
  to its square size; expressions padded to the batch's longest, truncated at 77 tokens);
- ``labels``: the mask resized to the model's resolution with PIL's box filter, as float
  targets in [0, 1]: each label is the share of its footprint the object covers, so a
  thin or small object keeps its share of the labels instead of vanishing, as it can
  under nearest-neighbour resizing.

With ``with_targets=True`` (evaluation) it adds what the metrics need, untouched:
``target_masks`` (a list of ``(H, W)`` bool tensors at each image's original size) and
``distractors`` (an int64 tensor; -1 where the rows have no ``distractors`` column).

>>> import numpy as np
>>> from PIL import Image
>>> from nemo_hf.testing.tiny_clipseg import tiny_clipseg
>>> _, processor = tiny_clipseg()
>>> mask = np.zeros((30, 40), bool); mask[:, :20] = True
>>> rows = [{"image": Image.new("RGB", (40, 30)), "mask": Image.fromarray(mask), "sentence": "the left one"}]
>>> batch = RISCollator(processor, with_targets=True)(rows)
>>> batch["labels"].shape, batch["target_masks"][0].shape, batch["distractors"].tolist()
(torch.Size([1, 64, 64]), torch.Size([30, 40]), [-1])
>>> float(batch["labels"][0, :, :32].mean()), float(batch["labels"][0, :, 32:].mean())
(1.0, 0.0)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image
from transformers import ProcessorMixin

__all__ = ["MAX_TEXT_TOKENS", "RISCollator", "mask_to_label", "target_mask"]

MAX_TEXT_TOKENS = 77  # CLIP's text context


def target_mask(mask: Any) -> np.ndarray:
    """A ground-truth mask (PIL image or array; non-zero is foreground) as an ``(H, W)`` bool array.

    >>> target_mask(np.array([[0, 255]], np.uint8)).tolist()
    [[False, True]]
    """
    array = np.array(mask)  # a copy: arrays viewing a PIL image are read-only, torch wants writable
    if array.ndim != 2:
        raise ValueError(f"a mask must be one channel (H, W), got shape {array.shape}")
    return array if array.dtype == np.bool_ else array != 0


def mask_to_label(mask: Any, size: tuple[int, int]) -> np.ndarray:
    """A mask resized to ``size`` = ``(height, width)`` as float32 targets in [0, 1] (area average).

    >>> mask_to_label(np.eye(4, dtype=bool), (2, 2)).round(2).tolist()
    [[0.5, 0.0], [0.0, 0.5]]
    """
    grey = Image.fromarray(target_mask(mask).astype(np.uint8) * 255)
    resized = grey.resize((size[1], size[0]), Image.Resampling.BOX)
    return np.asarray(resized, dtype=np.float32) / 255.0


class RISCollator:
    """``collate_fn`` for referring segmentation rows (see the module docstring).

    Picklable, so ``DataLoader`` workers can run it (tokenization and image resizing then
    happen in the workers, off the training loop).
    """

    def __init__(self, processor: ProcessorMixin, *, with_targets: bool = False) -> None:
        self.processor = processor
        self.with_targets = with_targets

    def __call__(self, rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        """One batch from a list of rows."""
        for key in ("image", "mask", "sentence"):
            missing = [i for i, row in enumerate(rows) if key not in row]
            if missing:
                raise KeyError(
                    f"rows {missing[:5]} have no {key!r} (keys: {sorted(rows[missing[0]])}); referring "
                    "segmentation rows need 'image', 'mask' and 'sentence' (use nemo_hf.per_sentence)"
                )
        encoding = self.processor(
            text=[row["sentence"] for row in rows],
            images=[row["image"].convert("RGB") for row in rows],
            padding=True,
            truncation=True,
            max_length=MAX_TEXT_TOKENS,
            return_tensors="pt",
        )
        size = tuple(encoding["pixel_values"].shape[-2:])
        batch: dict[str, Any] = {
            "pixel_values": encoding["pixel_values"],
            "input_ids": encoding["input_ids"],
            "attention_mask": encoding["attention_mask"],
            "labels": torch.from_numpy(np.stack([mask_to_label(row["mask"], size) for row in rows])),
        }
        if self.with_targets:
            batch["target_masks"] = [torch.from_numpy(target_mask(row["mask"])) for row in rows]
            batch["distractors"] = torch.tensor([int(row.get("distractors", -1)) for row in rows], dtype=torch.int64)
        return batch
