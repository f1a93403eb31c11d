"""Rows of a referring segmentation dataset → a model batch (a ``DataLoader`` ``collate_fn``).

Rows hold ``image`` (PIL), ``mask`` (PIL mode ``"1"``/``"L"`` or an array; non-zero is the
object) and ``sentence`` — the per-sentence view of the dataset and the rows of the NeMo
transform alike. The batch holds what the model and the loss need:

- ``pixel_values``, ``input_ids``, ``attention_mask`` from the processor (images stretched
  to its square size; expressions padded to the batch's longest, truncated at 77 tokens).
  Images that already have the processor's input size (NeMo draws them so) are rescaled
  and normalised directly instead: the processor's PIL path costs more than the rest of
  the collation, and the direct result is checked against the processor on the first
  such batch (any mismatch falls back to the processor for good);
- ``labels``: the mask resized to the model's resolution with PIL's box filter, as float
  targets in [0, 1]: each label is the share of its footprint the object covers, so a
  thin or small object keeps its share of the labels instead of vanishing, as it can
  under nearest-neighbour resizing.

With ``with_targets=True`` (evaluation) it adds what the metrics need, untouched:
``target_masks`` (a list of ``(H, W)`` bool tensors at each image's original size) and
``distractors`` (an int64 tensor; -1 where the rows have no ``distractors`` column) and
``referring_hard`` (an int64 tensor: 1 where the sentence needs more than category and colour
to single out its target, 0 where not, -1 where the rows carry no ``needs``: real data). When
rows carry the dataset's ``instances`` column (every annotated object of the image, see
:mod:`nemo_hf.data.instances`), it also adds, for object accuracy
(:mod:`nemo_hf.metrics.objects`), ``instance_masks`` (per row a ``(K, H, W)`` bool tensor at
the original size) and ``instance_roles`` (per row a ``(K,)`` int64 tensor: 0 target, 1
same-category distractor, 2 other object, from the row's ``ann_id`` or gRefCOCO's
``ann_ids``); ``None`` for a row whose ``instances`` are null. Without the column, neither
key is there and nothing is decoded.

With ``encode`` (an architecture's static ``encode(processor, images, sentences)``, see
:mod:`nemo_hf.modeling.inference`) the model inputs are what it returns and there are no
``labels``: the way a model that does not train here (Florence-2) is evaluated.

>>> import numpy as np
>>> from PIL import Image
>>> from nemo_hf.modeling import clipseg_from_clip
>>> _, processor = clipseg_from_clip("nemo-hf/synthetic-clip", image_size=96)
>>> mask = np.zeros((30, 40), bool); mask[:, :20] = True
>>> rows = [{"image": Image.new("RGB", (40, 30)), "mask": Image.fromarray(mask), "sentence": "the left one"}]
>>> batch = RISCollator(processor, with_targets=True)(rows)
>>> batch["labels"].shape, batch["target_masks"][0].shape, batch["distractors"].tolist(), batch["referring_hard"].tolist()
(torch.Size([1, 96, 96]), torch.Size([30, 40]), [-1], [-1])
>>> float(batch["labels"][0, :, :48].mean()), float(batch["labels"][0, :, 48:].mean())
(1.0, 0.0)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image
from transformers import ProcessorMixin

from nemo_hf.data.instances import decode_instances
from nemo_hf.data.meaning import referring_hard
from nemo_hf.metrics.objects import instance_roles

__all__ = ["MAX_TEXT_TOKENS", "RISCollator", "instance_targets", "mask_to_label", "target_mask", "text_length"]

MAX_TEXT_TOKENS = 77  # CLIP's text context


def text_length(tokenizer: Any) -> int:
    """Tokens kept per expression: CLIP's 77, or fewer when the tokenizer's model has fewer positions.

    >>> from nemo_hf.synthetic import word_tokenizer
    >>> text_length(word_tokenizer(["ring"], model_max_length=32))
    32
    """
    return min(MAX_TEXT_TOKENS, int(getattr(tokenizer, "model_max_length", MAX_TEXT_TOKENS)))


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
    binary = target_mask(mask)
    if binary.shape == tuple(size):  # the box filter at the same size is the identity
        return binary.astype(np.float32)
    grey = Image.fromarray(binary.astype(np.uint8) * 255)
    resized = grey.resize((size[1], size[0]), Image.Resampling.BOX)
    return np.asarray(resized, dtype=np.float32) / 255.0


def instance_targets(row: Mapping[str, Any], size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor] | None:
    """A row's instance masks ``(K, H, W)`` at ``size`` and their roles ``(K,)``; ``None`` without instances.

    ``size`` is the original image size, that of the row's mask: instances of any other
    size (e.g. on a mosaic drawn from the row) are an error, not a silent mismatch.

    >>> from pycocotools import mask as mask_utils
    >>> rle = mask_utils.encode(np.asfortranarray(np.eye(2, dtype=np.uint8)))["counts"].decode()
    >>> row = {"ann_id": 5, "instances": [{"ann_id": 5, "category_id": 1, "rle": rle},
    ...                                   {"ann_id": 6, "category_id": 1, "rle": rle}]}
    >>> masks, roles = instance_targets(row, (2, 2))
    >>> tuple(masks.shape), roles.tolist()
    ((2, 2, 2), [0, 1])
    """
    entries = row.get("instances")
    if entries is None:
        return None
    if "ann_ids" in row:
        targets = list(row["ann_ids"])
    elif "ann_id" in row:
        targets = [row["ann_id"]]
    else:
        raise KeyError(f"a row with 'instances' needs its target's 'ann_id' (or gRefCOCO's 'ann_ids') to tell "
                       f"the target among them; keys: {sorted(row)}")
    try:
        masks = decode_instances(entries, *size)
    except ValueError as err:
        raise ValueError(f"the row's instances do not fit its {size[0]}x{size[1]} mask ({err}); instances are "
                         "stored at the original image size, and a row whose image was changed (a mosaic) "
                         "cannot carry them") from None
    roles = instance_roles([e["ann_id"] for e in entries], [e["category_id"] for e in entries], targets)
    return torch.from_numpy(masks), torch.tensor(roles, dtype=torch.int64)


class _DirectNormalisation:
    """``pixel_values`` of RGB images already at an image processor's input size, computed directly.

    A uint8 value ``v`` of channel ``c`` becomes ``(v * rescale_factor - mean[c]) / std[c]``,
    which is what a resize-rescale-normalise processor (CLIP's, CLIPSeg's, ViT's) computes
    when the resize is the identity. Only built for processors with no other active step.
    """

    def __init__(self, image_processor: Any, size: tuple[int, int]) -> None:
        self.size = size
        rescale = image_processor.rescale_factor if image_processor.do_rescale else 1.0
        mean = np.broadcast_to(image_processor.image_mean if image_processor.do_normalize else 0.0, (3,))
        std = np.broadcast_to(image_processor.image_std if image_processor.do_normalize else 1.0, (3,))
        # one multiply-add per value: v * (rescale / std) - mean / std
        self.scale = torch.tensor(rescale / std, dtype=torch.float32).view(1, 3, 1, 1)
        self.offset = torch.tensor(-mean / std, dtype=torch.float32).view(1, 3, 1, 1)

    @classmethod
    def for_processor(cls, image_processor: Any) -> _DirectNormalisation | None:
        """The direct path, or ``None`` where the processor does more than resize, rescale and normalise."""
        extra_steps = ("do_center_crop", "do_pad", "do_reduce_labels")
        if any(getattr(image_processor, step, False) for step in extra_steps):
            return None
        size = getattr(image_processor, "size", None)
        # transformers 5 holds a SizeDict (attributes); older configs a plain dict
        width, height = (size.get(k) if isinstance(size, Mapping) else getattr(size, k, None) for k in ("width", "height"))
        if width is None or height is None or not hasattr(image_processor, "rescale_factor"):
            return None
        return cls(image_processor, (int(width), int(height)))

    def applies_to(self, images: Sequence[Any]) -> bool:
        return all(isinstance(i, Image.Image) and i.mode == "RGB" and i.size == self.size for i in images)

    def __call__(self, images: Sequence[Image.Image]) -> torch.Tensor:
        pixels = torch.from_numpy(np.stack([np.asarray(image) for image in images]))  # (B, H, W, 3) uint8
        channels_first = pixels.permute(0, 3, 1, 2).to(torch.float32, memory_format=torch.contiguous_format)
        return channels_first.mul_(self.scale).add_(self.offset)


class RISCollator:
    """``collate_fn`` for referring segmentation rows (see the module docstring).

    Picklable, so ``DataLoader`` workers can run it (tokenization and image resizing then
    happen in the workers, off the training loop).
    """

    def __init__(self, processor: ProcessorMixin, *, with_targets: bool = False,
                 encode: Callable[[Any, list[Image.Image], list[str]], Mapping[str, Any]] | None = None) -> None:
        self.processor = processor
        self.with_targets = with_targets
        self.encode = encode
        self._direct = _DirectNormalisation.for_processor(getattr(processor, "image_processor", None))
        self._direct_checked = False

    def __call__(self, rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        """One batch from a list of rows."""
        for key in ("image", "mask", "sentence"):
            missing = [i for i, row in enumerate(rows) if key not in row]
            if missing:
                raise KeyError(
                    f"rows {missing[:5]} have no {key!r} (keys: {sorted(rows[missing[0]])}); referring "
                    "segmentation rows need 'image', 'mask' and 'sentence' (use nemo_hf.per_sentence)"
                )
        images = [row["image"].convert("RGB") if row["image"].mode != "RGB" else row["image"] for row in rows]
        if self.encode is not None:
            batch: dict[str, Any] = dict(self.encode(self.processor, images, [row["sentence"] for row in rows]))
            return self._with_targets(batch, rows) if self.with_targets else batch
        text = self.processor.tokenizer(
            [row["sentence"] for row in rows],
            padding=True,
            truncation=True,
            max_length=text_length(self.processor.tokenizer),
            return_tensors="pt",
        )
        pixel_values = self._pixel_values(images)
        size = tuple(pixel_values.shape[-2:])
        batch = {
            "pixel_values": pixel_values,
            "input_ids": text["input_ids"],
            "attention_mask": text["attention_mask"],
            "labels": torch.from_numpy(np.stack([mask_to_label(row["mask"], size) for row in rows])),
        }
        return self._with_targets(batch, rows) if self.with_targets else batch

    @staticmethod
    def _with_targets(batch: dict[str, Any], rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        """``batch`` with what the metrics need (module docstring)."""
        batch["target_masks"] = [torch.from_numpy(target_mask(row["mask"])) for row in rows]
        batch["distractors"] = torch.tensor([int(row.get("distractors", -1)) for row in rows], dtype=torch.int64)
        batch["referring_hard"] = torch.tensor(
            [int(referring_hard(row["needs"])) if "needs" in row else -1 for row in rows], dtype=torch.int64)
        if any(row.get("instances") is not None for row in rows):
            per_row = [instance_targets(row, tuple(mask.shape)) for row, mask in zip(rows, batch["target_masks"])]
            batch["instance_masks"] = [None if pair is None else pair[0] for pair in per_row]
            batch["instance_roles"] = [None if pair is None else pair[1] for pair in per_row]
        return batch

    def _pixel_values(self, images: list[Image.Image]) -> torch.Tensor:
        if self._direct is None or not self._direct.applies_to(images):
            return self.processor.image_processor(images=images, return_tensors="pt")["pixel_values"]
        fast = self._direct(images)
        if not self._direct_checked:  # once per process: it must reproduce the processor
            reference = self.processor.image_processor(images=images, return_tensors="pt")["pixel_values"]
            self._direct_checked = True
            if reference.shape != fast.shape or not torch.allclose(reference, fast, atol=1e-5):
                self._direct = None
                return reference
        return fast
