"""Audit drawn mosaics against the ground truth: wrong labels, look-alikes, target sizes.

A mosaic's label says the expression refers to the target and to nothing else. It is
wrong when an object in a negative cell is one the full expression also fits — a **false
negative** — judged in the mosaic's own frame: every object's centre is carried into the
mosaic by its cell's geometry (the same :func:`~nemo_hf.mosaic.cell_geometry` the drawing
uses), its size class unchanged, and "left", "leftmost" or "left of the star" then read
across the whole canvas. :func:`audit_mosaics` counts, over NeMo's output rows (any
miner's, or random mosaics), the mosaics holding a false negative and those whose
negatives hold an object of the target's category, and of its category and colour.
:func:`target_sizes` says how large the targets end up (pixels of the input) and how many
are smaller than one patch of a ViT.

The rows give each sample's cells (``source_image_ids`` in cell order, ``target_cell``);
the layout is the even grid of ``len(source_image_ids)`` cells on a ``size × size`` canvas
unless ``cross_points`` (one per sample, ``None`` for even) are given: NeMo's rows do not
record a moved cross point.

>>> from nemo_hf.data.meaning import SceneObject, make_meaning
>>> truth = GroundTruth(
...     meanings={7: make_meaning(category="ring", column="left")},
...     targets={1: TargetTruth("ring", "red", (0, 0, 10, 10), (100, 100))},
...     frames={10: ((SceneObject("ring", "red", "small", 20, 50),), (100, 100)),
...             11: ((SceneObject("ring", "blue", "small", 20, 50),), (100, 100))})
>>> rows = {"sent_id": [7, 7], "ref_id": [1, 1], "target_cell": [0, 1],
...         "source_image_ids": [[10, 11, 11, 11], [11, 10, 11, 11]], "mosaic_kind": ["mined", "mined"]}
>>> audit = audit_mosaics(rows, truth, size=200)
>>> audit.mosaics, audit.false_negative, audit.same_category
(2, 2, 2)
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
from datasets import Dataset

from nemo_hf.data.meaning import SceneObject, fits
from nemo_hf.mosaic.cells import Resize, cell_geometry
from nemo_hf.mosaic.layout import Box, grid_layout

__all__ = ["GroundTruth", "MosaicAudit", "TargetSizes", "TargetTruth", "audit_mosaics", "false_negative_cells",
           "objects_in_cell", "target_sizes"]  # fmt: skip

Frame = tuple[tuple[SceneObject, ...], tuple[float, float]]
_SAMPLE_COLUMNS = ("sent_id", "ref_id", "source_image_ids", "target_cell")


class TargetTruth(NamedTuple):
    """A ref's target: its category and colour (``None`` if unknown), box ``[x, y, w, h]`` and image size."""

    category: str
    colour: str | None
    bbox: tuple[float, float, float, float]
    frame: tuple[float, float]


@dataclass(frozen=True)
class GroundTruth:
    """What the audit looks up: meanings by ``sent_id``, targets by ``ref_id``, frames by ``image_id``."""

    meanings: Mapping[int, Mapping[str, Any]]
    targets: Mapping[int, TargetTruth]
    frames: Mapping[int, Frame]

    @classmethod
    def from_datasets(cls, *datasets: Dataset) -> GroundTruth:
        """Gather the truth from builder datasets (rows per object or per sentence).

        Targets come from any dataset with ``bbox``; meanings and frames only from
        synthetic ones (real data has targets only, enough for :func:`target_sizes`).
        """
        meanings: dict[int, Mapping[str, Any]] = {}
        targets: dict[int, TargetTruth] = {}
        frames: dict[int, Frame] = {}
        for ds in datasets:
            wanted = ("ref_id", "image_id", "width", "height", "bbox", "category", "target_attributes",
                      "sent_ids", "sent_id", "meaning", "scene_objects")  # fmt: skip
            rows = ds.select_columns([c for c in wanted if c in ds.column_names]).to_list()
            for row in rows:
                frame = (float(row["width"]), float(row["height"]))
                if row.get("bbox") is not None:
                    colour = (row.get("target_attributes") or {}).get("colour")
                    box = tuple(row["bbox"])
                    targets[int(row["ref_id"])] = TargetTruth(row.get("category", ""), colour, box, frame)
                objects = row.get("scene_objects")
                if objects is not None:
                    fields = ("category", "colour", "size", "x", "y")
                    frames[int(row["image_id"])] = (
                        tuple(SceneObject(*v) for v in zip(*(objects[f] for f in fields), strict=True)), frame
                    )
                sent_ids = row["sent_ids"] if "sent_ids" in row else [row.get("sent_id")]
                texts = row.get("meaning") if "sent_ids" in row else [row.get("meaning")]
                for sent_id, text in zip(sent_ids, texts or [], strict=False):
                    if text is not None:
                        meanings[int(sent_id)] = json.loads(text)
        return cls(meanings, targets, frames)


@dataclass(frozen=True)
class MosaicAudit:
    """Counts over the audited mosaics (single images are not mosaics and are skipped)."""

    mosaics: int
    false_negative: int  # a negative cell holds an object the full expression fits
    same_category: int  # a negative cell holds an object of the target's category
    same_category_colour: int  # … of the target's category and colour

    def shares(self) -> dict[str, float]:
        """Each count as a share of the mosaics (NaN when there are none).

        >>> MosaicAudit(4, 1, 2, 2).shares()["false_negative"]
        0.25
        """
        n = self.mosaics
        counts = {"false_negative": self.false_negative, "same_category": self.same_category,
                  "same_category_colour": self.same_category_colour}  # fmt: skip
        return {k: v / n if n else math.nan for k, v in counts.items()}


def objects_in_cell(frame: Frame, box: Box, resize: Resize = "stretch") -> list[SceneObject]:
    """An image's objects with their centres carried into a mosaic cell ``box``.

    >>> objects = ((SceneObject("ring", "red", "small", 50, 25),), (100, 50))
    >>> objects_in_cell(objects, Box(100, 0, 200, 100))[0][3:]
    (150.0, 50.0)
    """
    objects, (width, height) = frame
    geometry = cell_geometry((max(1, round(width)), max(1, round(height))), box.size, resize)
    (cw, ch), (ox, oy) = geometry.content_size, geometry.offset
    return [
        obj._replace(x=box.left + ox + obj.x * cw / width, y=box.top + oy + obj.y * ch / height)
        for obj in objects
    ]


def false_negative_cells(
    meaning: Mapping[str, Any], frames: Sequence[Frame], boxes: Sequence[Box], target_cell: int, *, size: int,
    resize: Resize = "stretch",
) -> list[int]:
    """The negative cells of one mosaic holding an object the full expression fits, judged on the whole canvas.

    ``frames`` are the cells' images (objects and ``(width, height)``), in cell order;
    ``boxes`` the cells on a ``size × size`` canvas. What makes a mosaic's label wrong
    (:func:`audit_mosaics` counts the mosaics with any such cell).

    >>> from nemo_hf.data.meaning import make_meaning
    >>> ring = lambda colour, x: ((SceneObject("ring", colour, "small", x, 50),), (100, 100))
    >>> boxes = grid_layout(2, 200)
    >>> false_negative_cells(make_meaning(category="ring", colour="red"), [ring("red", 20), ring("blue", 20),
    ...                      ring("red", 80), ring("green", 50)], boxes, target_cell=0, size=200)
    [2]
    """
    placed: list[SceneObject] = []
    cells: list[int] = []
    for index, (frame, box) in enumerate(zip(frames, boxes, strict=True)):
        here = objects_in_cell(frame, box, resize)
        placed += here
        cells += [index] * len(here)
    return sorted({cells[k] for k in fits(meaning, placed, (size, size)) if cells[k] != target_cell})


def _columns(samples: Dataset | Mapping[str, Sequence[Any]], names: Sequence[str]) -> dict[str, list]:
    if isinstance(samples, Dataset):
        present = [n for n in names if n in samples.column_names]
        return samples.select_columns(present).to_dict()  # never decodes the images
    return {n: list(samples[n]) for n in names if n in samples}


def _layout(cells: int, size: int, cross_point: tuple[float, float] | None) -> list[Box]:
    if cells == 1:
        return [Box(0, 0, size, size)]
    grid = math.isqrt(cells)
    if grid * grid != cells:
        raise ValueError(f"source_image_ids of {cells} images is neither one image nor a square grid")
    return grid_layout(grid, size, cross_point)


def audit_mosaics(
    samples: Dataset | Mapping[str, Sequence[Any]],
    truth: GroundTruth,
    *,
    size: int,
    resize: Resize = "stretch",
    cross_points: Sequence[tuple[float, float] | None] | None = None,
) -> MosaicAudit:
    """Count the mosaics among ``samples`` (NeMo's output rows) holding a false negative or a look-alike.

    ``samples`` needs ``sent_id``, ``ref_id``, ``source_image_ids`` and ``target_cell``
    (``mosaic_kind`` "single" rows are skipped); ``size`` and ``resize`` are the NeMo
    settings the mosaics were drawn with.
    """
    rows = _columns(samples, (*_SAMPLE_COLUMNS, "mosaic_kind"))
    missing = [c for c in _SAMPLE_COLUMNS if c not in rows]
    if missing:
        raise ValueError(f"the samples lack column(s) {missing}: audit NeMo's output rows")
    mosaics = false_negative = same_category = same_colour = 0
    for n, (sent_id, ref_id, ids, cell) in enumerate(zip(*(rows[c] for c in _SAMPLE_COLUMNS), strict=True)):
        kind = rows["mosaic_kind"][n] if "mosaic_kind" in rows else None
        if kind == "single" or len(ids) == 1:
            continue
        if sent_id not in truth.meanings or ref_id not in truth.targets:
            raise ValueError(f"no ground truth for sent_id {sent_id} / ref_id {ref_id}: build GroundTruth from the "
                             "dataset the samples were drawn from")
        boxes = _layout(len(ids), size, cross_points[n] if cross_points is not None else None)
        missing = [image_id for image_id in ids if image_id not in truth.frames]
        if missing:
            raise ValueError(f"no scene objects for image {missing[0]}: include the pool in GroundTruth")
        frames = [truth.frames[image_id] for image_id in ids]
        target = truth.targets[ref_id]
        mosaics += 1
        false_negative += bool(false_negative_cells(truth.meanings[sent_id], frames, boxes, cell, size=size,
                                                    resize=resize))
        alike = [obj for index, (frame, box) in enumerate(zip(frames, boxes, strict=True)) if index != cell
                 for obj in objects_in_cell(frame, box, resize) if obj.category == target.category]
        same_category += bool(alike)
        same_colour += any(obj.colour == target.colour for obj in alike)
    return MosaicAudit(mosaics, false_negative, same_category, same_colour)


@dataclass(frozen=True)
class TargetSizes:
    """How large targets are in the drawn samples: the longer side of each target's box, in pixels."""

    count: int
    median_px: float
    below_patch: float  # share of targets whose longer side is under one patch


def target_sizes(
    samples: Dataset | Mapping[str, Sequence[Any]],
    truth: GroundTruth,
    *,
    size: int,
    patch_size: int,
    resize: Resize = "stretch",
    cross_points: Sequence[tuple[float, float] | None] | None = None,
) -> TargetSizes:
    """Median target size in its cell (single images: the whole canvas) and the share under a patch.

    The size of a target is the longer side of its box once carried into the cell: a
    target under ``patch_size`` pixels on both sides fits inside one ViT patch.

    >>> truth = GroundTruth({}, {1: TargetTruth("ring", None, (0, 0, 40, 20), (200, 100))}, {})
    >>> rows = {"ref_id": [1, 1], "target_cell": [0, 3], "source_image_ids": [[5], [6, 7, 5, 8]]}
    >>> target_sizes(rows, truth, size=200, patch_size=16)
    TargetSizes(count=2, median_px=30.0, below_patch=0.0)
    """
    rows = _columns(samples, ("ref_id", "source_image_ids", "target_cell"))
    lengths = []
    for n, (ref_id, ids, cell) in enumerate(zip(rows["ref_id"], rows["source_image_ids"], rows["target_cell"],
                                                strict=True)):  # fmt: skip
        target = truth.targets[ref_id]
        box = _layout(len(ids), size, cross_points[n] if cross_points is not None else None)[cell]
        width, height = target.frame
        geometry = cell_geometry((max(1, round(width)), max(1, round(height))), box.size, resize)
        (cw, ch), (_, _, bw, bh) = geometry.content_size, target.bbox
        lengths.append(max(bw * cw / width, bh * ch / height))
    values = np.asarray(lengths, dtype=np.float64)
    if not values.size:
        return TargetSizes(0, math.nan, math.nan)
    return TargetSizes(len(values), float(np.median(values)), float((values < patch_size).mean()))
