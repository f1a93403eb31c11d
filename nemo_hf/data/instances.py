"""Every annotated object of a row's image: the builder's ``instances`` column.

``instances.json`` annotates every COCO object of each image, not only the referred ones.
Each row of the ``RefCOCO`` builder carries all of them, so that the object a predicted
mask chose (the target, a same-category distractor, another object) can be scored on real
data (:mod:`nemo_hf.metrics.objects`). The column is a list, sorted by ``ann_id``, of

- ``ann_id`` and ``category_id`` of the annotation (the row's own targets are among them);
- ``rle``: its mask as COCO's compressed RLE ``counts`` string at the row's
  ``(height, width)`` — the union of its parts, drawn by the very code that draws the
  target ``mask`` (:func:`~nemo_hf.data.masks.segmentation_to_rle`: malformed polygons
  dropped, far-away ones clipped). An annotation with nothing drawable (or an unreadable
  segmentation, which stops the build only where it is a row's target) gets an all-empty
  mask; the build counts such objects in a warning.

pycocotools decodes an entry directly: ``mask_utils.decode({"size": [height, width],
"counts": entry["rle"]})``. :func:`decode_instances` does it without trusting the string
(it checks every run first), as the evaluation collator does.

RLE strings cost little to store and nothing to keep: a mask is only drawn when a metric
asks for it. Each image's instances are encoded once per shard of the build, not once per
ref, and the objects some row of the writer batch refers to take the RLE already drawn for
that row's ``mask`` (:class:`ImageInstances`).

>>> import numpy as np
>>> from pycocotools import mask as mask_utils
>>> rle = mask_utils.encode(np.asfortranarray(np.eye(3, dtype=np.uint8)))["counts"].decode()
>>> masks = decode_instances([{"ann_id": 4, "category_id": 1, "rle": rle}], height=3, width=3)
>>> masks.shape, masks[0].astype(int).tolist()
((1, 3, 3), [[1, 0, 0], [0, 1, 0], [0, 0, 1]])
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import datasets
import numpy as np
from pycocotools import mask as mask_utils

from nemo_hf.data.masks import MaskRuns, segmentation_to_rle
from nemo_hf.data.refer_files import InstancesIndex, ReferDataWarning

__all__ = ["INSTANCES_FEATURE", "ImageInstances", "decode_instances", "empty_rle"]

INSTANCES_FEATURE = datasets.List({
    "ann_id": datasets.Value("int64"),
    "category_id": datasets.Value("int64"),
    "rle": datasets.Value("string"),
})


@functools.lru_cache(maxsize=256)
def empty_rle(height: int, width: int) -> str:
    """The compressed RLE ``counts`` of an all-background ``height`` x ``width`` mask.

    >>> empty_rle(4, 5)
    'd0'
    """
    rle = mask_utils.frPyObjects({"size": [height, width], "counts": [height * width]}, height, width)
    return rle["counts"].decode()


class ImageInstances:
    """Each image's ``instances`` entries, encoded once and kept until :meth:`forget`.

    The builder keeps one per split, forgets at each shard and fills each writer batch
    (:meth:`fill`), so an image's objects are encoded once per shard (refs of one image are mostly
    neighbours in ``ref_id`` order), memory stays that of a shard, and a referred object
    reuses its row's RLE. ``enabled=False`` gives ``None`` for every image (the config's
    ``with_instances=False``).

    >>> from nemo_hf.data.refer_files import InstancesIndex
    >>> index = InstancesIndex(images={1: {"id": 1}}, categories={3: "cat"}, anns_by_image={1: [9]},
    ...                        annotations={9: {"id": 9, "category_id": 3, "segmentation": [[0, 0, 2, 0, 2, 2, 0, 2]]}})
    >>> entry, = ImageInstances(index).of_image(1, height=3, width=3)
    >>> entry["ann_id"], entry["category_id"], int(decode_instances([entry], 3, 3).sum())
    (9, 3, 4)
    """

    def __init__(self, index: InstancesIndex, enabled: bool = True) -> None:
        self.index = index
        self.enabled = enabled
        self._cache: dict[int, list[dict[str, Any]]] = {}
        # ann_ids, so that an object met in several shards is counted once
        self._dropped_polygons: set[int] = set()
        self._empty: set[int] = set()
        self._unreadable: set[int] = set()

    def forget(self) -> None:
        """Drop the encoded entries (the counts of what was repaired stay)."""
        self._cache.clear()

    def fill(self, batch: list[tuple[dict[str, Any], list[dict]]]) -> list[tuple[dict[str, Any], list[dict]]]:
        """Set ``instances`` of the builder's pending rows ``(row, target RLEs)``; returns ``batch``.

        A row's target RLEs were drawn for its ``mask`` by the same function at the same
        size, so they stand for those objects here (the build then draws a referred object
        once, not twice); their repairs are already counted with the row's.
        """
        if not self.enabled:
            return batch  # rows without the key: the column is null
        known: dict[tuple[int, int, int], dict] = {}
        for row, rles in batch:
            targets = row["ann_ids"] if "ann_ids" in row else [row["ann_id"]]
            if len(targets) == len(rles):  # no target was left out for having nothing to draw
                known.update(((ann_id, row["height"], row["width"]), rle) for ann_id, rle in zip(targets, rles))
        for row, _ in batch:
            row["instances"] = self.of_image(row["image_id"], row["height"], row["width"], known)
        return batch

    def of_image(self, image_id: int, height: int, width: int,
                 known: dict[tuple[int, int, int], dict] | None = None) -> list[dict[str, Any]] | None:
        """The entries of every annotation of ``image_id`` (sorted by ``ann_id``) at ``height`` x ``width``.

        ``known`` maps ``(ann_id, height, width)`` to an RLE already drawn for it.
        """
        if not self.enabled:
            return None
        entries = self._cache.get(image_id)
        if entries is None:
            known = known or {}
            entries = [self._entry(ann_id, height, width, known.get((ann_id, height, width)))
                       for ann_id in sorted(self.index.anns_by_image.get(image_id, ()))]
            self._cache[image_id] = entries
        return entries

    def _entry(self, ann_id: int, height: int, width: int, drawn: dict | None) -> dict[str, Any]:
        annotation = self.index.annotations[ann_id]
        if drawn is not None:
            return {"ann_id": int(ann_id), "category_id": int(annotation["category_id"]),
                    "rle": drawn["counts"].decode("ascii")}
        try:
            rle, dropped = segmentation_to_rle(annotation.get("segmentation"), height, width)
        except (ValueError, TypeError, KeyError):
            # a non-target object was never read before this column existed: count it rather
            # than stop a build that used to succeed (a row's target still stops it)
            rle, dropped = None, 0
            self._unreadable.add(ann_id)
        if dropped:
            self._dropped_polygons.add(ann_id)
        if rle is None:
            self._empty.add(ann_id)
            counts = empty_rle(height, width)
        else:
            counts = rle["counts"].decode("ascii")
        return {"ann_id": int(ann_id), "category_id": int(annotation["category_id"]), "rle": counts}

    def report(self, source: Path, split: str) -> None:
        """One ``ReferDataWarning`` of the objects drawn partly or not at all, if any."""
        parts = [f"{len(ids)} {what}" for ids, what in (
            (self._dropped_polygons, "objects lost malformed polygon parts"),
            (self._unreadable, "objects have an unreadable segmentation"),
            (self._empty, "objects have nothing to draw (stored as all-background masks)"),
        ) if ids]
        if parts:
            warnings.warn(f"{source} [{split}]: instances column: " + ", ".join(parts), ReferDataWarning, stacklevel=2)


def decode_instances(instances: Sequence[dict[str, Any]], height: int, width: int) -> np.ndarray:
    """The ``(K, height, width)`` bool masks of an ``instances`` entry list, in its order.

    Every RLE string is checked (alphabet, runs covering exactly ``height`` x ``width``)
    before it is drawn; a wrong one raises ``ValueError`` — e.g. instances of another image
    size than the mask they are compared with.

    >>> decode_instances([], 2, 3).shape
    (0, 2, 3)
    """
    if not instances:
        return np.zeros((0, height, width), dtype=bool)
    rles = [[{"size": [height, width], "counts": entry["rle"].encode("ascii")}] for entry in instances]
    return np.stack(MaskRuns.from_rles(rles, [(height, width)] * len(rles)).arrays())
