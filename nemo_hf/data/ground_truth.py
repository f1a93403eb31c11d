"""Ground-truth columns of the builder: what a synthetic world knows, ``None`` for real data.

Synthetic refer files (:mod:`nemo_hf.synthetic`) carry more than RefCOCO's fields: each
annotation an ``attributes`` dict (``colour``, ``size`` class, ``centre`` ``[x, y]``), each
sentence a ``meaning`` (:mod:`~nemo_hf.data.meaning`) and ``needs`` (the smallest set of
kinds that singles its target out). Every variant's schema has these columns, so real and
synthetic data share one schema:

- ``target_attributes``: ``{"colour", "size"}`` of a one-object ref's target; ``None``
  for real data and for gRefCOCO's multi- and no-target refs;
- ``needs``: one entry per sentence (parallel to ``sentences``): a list of kinds, or
  ``None`` where unknown or where the sentence does not single its target out;
- ``meaning``: one entry per sentence: the meaning as a JSON string (sorted keys), or
  ``None``;
- ``scene_objects``: every annotated object of the row's image as parallel lists
  ``ann_id``, ``category``, ``colour``, ``size``, ``x``, ``y`` (centre, pixels), so a
  dataset alone (a Hub copy too) can say which objects any meaning fits; ``None`` unless
  every object of the image has attributes.

:func:`scene_frames` and :func:`sentence_meanings` read these columns back.

>>> ann = {"id": 3, "category_id": 1, "attributes": {"colour": "red", "size": "small", "centre": [4.0, 5.0]}}
>>> objects_of([ann], {1: "circle"})
{'ann_id': [3], 'category': ['circle'], 'colour': ['red'], 'size': ['small'], 'x': [4.0], 'y': [5.0]}
>>> objects_of([{"id": 4, "category_id": 1}], {1: "person"}) is None
True
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

import datasets
import numpy as np

from nemo_hf.data.meaning import KINDS, SIZES, SceneObject, check_meaning
from nemo_hf.data.scene_batch import SceneBatch

__all__ = [
    "GROUND_TRUTH_COLUMNS",
    "GROUND_TRUTH_FEATURES",
    "GroundTruthError",
    "image_objects",
    "meaning_json",
    "objects_of",
    "scene_frames",
    "sentence_ground_truth",
    "sentence_meanings",
    "target_attributes",
]

_OBJECT_FIELDS = ("ann_id", "category", "colour", "size", "x", "y")
GROUND_TRUTH_FEATURES: dict[str, Any] = {
    "target_attributes": {"colour": datasets.Value("string"), "size": datasets.Value("string")},
    "needs": datasets.List(datasets.List(datasets.Value("string"))),
    "meaning": datasets.List(datasets.Value("string")),
    "scene_objects": {
        "ann_id": datasets.List(datasets.Value("int64")),
        "category": datasets.List(datasets.Value("string")),
        "colour": datasets.List(datasets.Value("string")),
        "size": datasets.List(datasets.Value("string")),
        # float64: the positions the grammar judged, to the last bit
        "x": datasets.List(datasets.Value("float64")),
        "y": datasets.List(datasets.Value("float64")),
    },
}
GROUND_TRUTH_COLUMNS = tuple(GROUND_TRUTH_FEATURES)


class GroundTruthError(ValueError):
    """A ground-truth field of a refer file is malformed (the message says which and how)."""


def _annotation_attributes(ann: Mapping[str, Any]) -> dict[str, Any] | None:
    """The annotation's checked ``attributes``, ``None`` if it has none."""
    attributes = ann.get("attributes")
    if attributes is None:
        return None
    centre = attributes.get("centre") if isinstance(attributes, Mapping) else None
    valid = (
        isinstance(attributes.get("colour") if isinstance(attributes, Mapping) else None, str)
        and attributes.get("size") in SIZES
        and isinstance(centre, list) and len(centre) == 2
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in centre)
    )  # fmt: skip
    if not valid:
        raise GroundTruthError(
            f"annotation {ann.get('id')}: attributes must be {{'colour': str, 'size': one of {', '.join(SIZES)}, "
            f"'centre': [x, y]}}, got {attributes!r}"
        )
    return attributes  # type: ignore[return-value]


def target_attributes(anns: Sequence[Mapping[str, Any]]) -> dict[str, str] | None:
    """``{"colour", "size"}`` of a ref's one target; ``None`` for several, none, or no attributes.

    >>> target_attributes([{"id": 1, "attributes": {"colour": "red", "size": "large", "centre": [1, 2]}}])
    {'colour': 'red', 'size': 'large'}
    """
    if len(anns) != 1:
        return None
    attributes = _annotation_attributes(anns[0])
    return None if attributes is None else {"colour": attributes["colour"], "size": attributes["size"]}


def objects_of(anns: Sequence[Mapping[str, Any]], categories: Mapping[int, str]) -> dict[str, list] | None:
    """An image's annotations as ``scene_objects`` (in the given order); ``None`` unless all have attributes."""
    out: dict[str, list] = {field: [] for field in _OBJECT_FIELDS}
    for ann in anns:
        attributes = _annotation_attributes(ann)
        if attributes is None:
            return None
        out["ann_id"].append(int(ann["id"]))
        out["category"].append(categories.get(ann["category_id"], ""))
        out["colour"].append(attributes["colour"])
        out["size"].append(attributes["size"])
        out["x"].append(float(attributes["centre"][0]))
        out["y"].append(float(attributes["centre"][1]))
    return out if anns else None


def meaning_json(meaning: Any) -> str:
    """A checked meaning as the column stores it: JSON with sorted keys, no spaces.

    >>> from nemo_hf.data.meaning import make_meaning
    >>> meaning_json(make_meaning(colour="red"))[:40]
    '{"category":null,"colour":"red","column"'
    """
    try:
        check_meaning(meaning)
    except ValueError as err:
        raise GroundTruthError(str(err)) from None
    return json.dumps(meaning, sort_keys=True, separators=(",", ":"))


def _checked_needs(needs: Any) -> list[str] | None:
    if needs is None:
        return None
    if not isinstance(needs, list) or len(set(map(str, needs))) != len(needs) or not set(needs) <= set(KINDS):
        raise GroundTruthError(f"needs must be None or a list of distinct kinds from {', '.join(KINDS)}, got {needs!r}")
    return [kind for kind in KINDS if kind in needs]


def sentence_ground_truth(sentence: Any) -> tuple[list[str] | None, str | None]:
    """``(needs, meaning JSON)`` of a refer sentence entry; ``(None, None)`` when it has neither.

    >>> sentence_ground_truth({"raw": "left man", "sent_id": 3})
    (None, None)
    """
    if not isinstance(sentence, Mapping):
        return None, None
    meaning = sentence.get("meaning")
    return _checked_needs(sentence.get("needs")), None if meaning is None else meaning_json(meaning)


# --------------------------------------------------------------------------- reading back


def _require(ds: datasets.Dataset, names: Sequence[str], what: str) -> None:
    missing = [name for name in names if name not in ds.column_names]
    if missing:
        raise ValueError(
            f"the {what} has no column(s) {missing} (it has {ds.column_names}); build it with nemo_hf's "
            "RefCOCO builder from a synthetic tree (nemo_hf.synthetic.make_refer_dataset), which adds them"
        )


def image_objects(ds: datasets.Dataset, what: str = "dataset") -> tuple[np.ndarray, list[tuple[list[SceneObject], tuple[int, int]]]]:
    """Every distinct image of ``ds``: its ids (ascending) and, for each, ``(objects, (width, height))``.

    Reads ``image_id``, ``width``, ``height`` and ``scene_objects``; a ``ValueError`` names
    the first image without ground truth (real data has none).

    >>> ring = {"ann_id": [1], "category": ["ring"], "colour": ["red"], "size": ["small"], "x": [5.0], "y": [2.0]}
    >>> rows = datasets.Dataset.from_dict({"image_id": [7, 7], "width": [10, 10], "height": [10, 10],
    ...                                    "scene_objects": [ring, ring]})
    >>> ids, frames = image_objects(rows)
    >>> ids.tolist(), frames[0][0][0].category, frames[0][1]
    ([7], 'ring', (10, 10))
    """
    _require(ds, ("image_id", "width", "height", "scene_objects"), what)
    table = ds.select_columns(["image_id", "width", "height", "scene_objects"]).with_format("arrow")[:]
    image_ids = table.column("image_id").to_numpy()
    unique, first = np.unique(image_ids, return_index=True)
    frames = []
    for row in table.take(first).to_pylist():
        objects = row["scene_objects"]
        if objects is None:
            raise ValueError(
                f"image {row['image_id']} of the {what} has no scene_objects: only synthetic trees carry "
                "ground truth"
            )
        frames.append((
            [SceneObject(*values) for values in zip(*(objects[f] for f in _OBJECT_FIELDS[1:]), strict=True)],
            (row["width"], row["height"]),
        ))  # fmt: skip
    return unique, frames


def scene_frames(ds: datasets.Dataset, what: str = "dataset") -> SceneBatch:
    """Every distinct image of ``ds`` (ascending ``image_id``) as a :class:`~nemo_hf.data.scene_batch.SceneBatch`.

    The objects of :func:`image_objects`, as arrays.

    >>> ring = {"ann_id": [1], "category": ["ring"], "colour": ["red"], "size": ["small"], "x": [5.0], "y": [2.0]}
    >>> rows = datasets.Dataset.from_dict({"image_id": [7, 7], "width": [10, 10], "height": [10, 10],
    ...                                    "scene_objects": [ring, ring]})
    >>> frames = scene_frames(rows)
    >>> frames.image_ids.tolist(), frames.x.tolist()
    ([7], [[5.0]])
    """
    return SceneBatch.from_frames(*image_objects(ds, what))


def sentence_meanings(ds: datasets.Dataset, what: str = "dataset") -> list[dict[str, Any]]:
    """The meaning of every sentence of ``ds`` in row order (rows per object or per sentence).

    >>> rows = datasets.Dataset.from_dict({"sentences": [["red one", "the red ring"]],
    ...                                    "meaning": [['{"colour": "red"}', '{"category": "ring"}']]})
    >>> sentence_meanings(rows)
    [{'colour': 'red'}, {'category': 'ring'}]
    """
    _require(ds, ("meaning",), what)
    column = ds.select_columns(["meaning"]).with_format("arrow")[:].column("meaning").to_pylist()
    flat = [m for row in column for m in row] if "sentences" in ds.column_names else column
    if any(m is None for m in flat):
        raise ValueError(f"the {what} has sentences without a meaning: only synthetic trees carry them")
    return [json.loads(m) for m in flat]
