"""Florence-2's polygon answers as masks: parse ``<loc_N>`` coordinates, rasterise them as COCO draws its polygons.

Florence-2 answers ``<REFERRING_EXPRESSION_SEGMENTATION>`` with text: polygons whose points
are pairs of location tokens ``<loc_x><loc_y>``, each coordinate one of 1000 bins across the
image's width or height, polygons separated by ``<sep>`` and optionally wrapped in
``<poly>…</poly>``. :func:`parse_polygons` reads them as ``transformers``'
``Florence2PostProcessor`` does — the same bins, each point at its bin's centre,
``(bin + 0.5) · side / 1000`` — with two differences, both deliberate: coordinates stay
floats (the post-processor truncates them to whole pixels) and are clipped to the image
(a bin past 999, which the model's vocabulary does not hold but a hand-edited answer may,
lands on the border rather than outside). A trailing odd coordinate is dropped, as there;
a polygon of fewer than three points has no area and is left out. Any other text (a
phrase, ``<s>``, ``</s>``, ``<pad>``) is ignored.

:func:`rasterise_polygons` draws the union of the polygons with ``pycocotools``, the
rasteriser that drew the RefCOCO ground truth from COCO's polygons, so prediction and
ground truth share one pixel convention: a pixel is inside when its centre is.

>>> answer = "</s><s><loc_100><loc_100><loc_500><loc_100><loc_500><loc_500><sep><loc_0><loc_0><loc_1><loc_1></s>"
>>> polygons = parse_polygons(answer, image_size=(40, 30))
>>> len(polygons), polygons[0].round(3).tolist()  # (bin + 0.5) / 1000 of 40 x 30 pixels
(1, [[4.02, 3.015], [20.02, 3.015], [20.02, 15.015]])
>>> mask = rasterise_polygons(polygons, (30, 40))
>>> mask.shape, mask.dtype, int(mask.sum()) > 0
((30, 40), dtype('bool'), True)
>>> rasterise_polygons([], (2, 3)).any()
np.False_
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
from pycocotools import mask as mask_utils

__all__ = ["LOCATION_BINS", "parse_polygons", "rasterise_polygons"]

LOCATION_BINS = 1000
"""Bins per side of Florence-2's location tokens (``<loc_0>`` … ``<loc_999>``)."""

_LOCATION = re.compile(r"<loc_(\d+)>")
_INSTANCE = re.compile(r"<poly>(.*?)</poly>", re.DOTALL)


def parse_polygons(text: str, image_size: tuple[int, int], bins: int = LOCATION_BINS) -> list[np.ndarray]:
    """The polygons of a Florence-2 answer, each ``(n, 2)`` float ``(x, y)`` in pixels of ``image_size`` = ``(w, h)``.

    Polygons with fewer than three points are left out (see the module docstring); an
    answer with none gives ``[]``.

    >>> parse_polygons("<loc_0><loc_0><loc_1200><loc_0><loc_1200><loc_999>", (10, 10))[0].round(3).tolist()
    [[0.005, 0.005], [10.0, 0.005], [10.0, 9.995]]
    >>> parse_polygons("the red circle", (10, 10))
    []
    """
    width, height = image_size
    if width <= 0 or height <= 0:
        raise ValueError(f"image_size must be a positive (width, height), got {image_size!r}")
    instances = _INSTANCE.findall(text) or [text]
    polygons = []
    for instance in instances:
        for part in instance.split("<sep>"):
            values = [int(v) for v in _LOCATION.findall(part)]
            if len(values) % 2:
                values = values[:-1]
            if len(values) < 6:
                continue
            points = (np.asarray(values, dtype=np.float64).reshape(-1, 2) + 0.5) / bins
            points *= (width, height)
            np.clip(points, 0.0, (width, height), out=points)
            polygons.append(points)
    return polygons


def rasterise_polygons(polygons: Sequence[np.ndarray], size: tuple[int, int]) -> np.ndarray:
    """The union of ``polygons`` (``(n, 2)`` ``(x, y)`` arrays) as a bool mask of ``size`` = ``(height, width)``.

    >>> square = np.array([[2.0, 2.0], [6.0, 2.0], [6.0, 5.0], [2.0, 5.0]])
    >>> rasterise_polygons([square], (8, 10)).sum()  # 4 x 3 pixels, whose centres lie inside
    np.int64(12)
    """
    height, width = int(size[0]), int(size[1])
    drawable = [np.asarray(p, dtype=np.float64).reshape(-1).tolist() for p in polygons if len(p) >= 3]
    if not drawable:
        return np.zeros((height, width), dtype=bool)
    rles = mask_utils.frPyObjects(drawable, height, width)
    return mask_utils.decode(mask_utils.merge(rles)).astype(bool)
