"""COCO segmentations → binary masks, the way RIS needs them.

A RefCOCO object is often several polygon parts. The original ``refer`` toolkit *sums*
the decoded parts, so pixels where parts overlap get value 2, which some code bases then
read as background. Here the parts are merged as a **union** (pycocotools ``merge`` with
``intersect=False``). Compressed RLE (``counts`` a string, as JSON stores it) and
uncompressed RLE (``counts`` a list) are accepted too. Malformed polygons — odd length,
fewer than 3 points, non-finite numbers — are dropped and counted by the caller.

>>> square = [[0, 0, 4, 0, 4, 4, 0, 4]]
>>> mask, dropped = segmentation_to_mask(square, height=6, width=6)
>>> int(mask.sum()), dropped
(16, 0)
"""

from __future__ import annotations

import math
import struct
import zlib
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils


def _is_valid_polygon(polygon: Any) -> bool:
    if not isinstance(polygon, (list, tuple)) or len(polygon) < 6 or len(polygon) % 2:
        return False
    try:  # one pass in C: a non-number raises, a NaN or an infinity makes the sum non-finite
        return math.isfinite(math.fsum(polygon))
    except (TypeError, ValueError, OverflowError):
        return False


def segmentation_to_rle(segmentation: Any, height: int, width: int) -> tuple[dict | None, int]:
    """Encode a COCO segmentation as one RLE (union of its parts).

    Returns ``(rle, dropped_polygons)``; ``rle`` is ``None`` when nothing valid is left.
    Raises ``ValueError`` for a segmentation of an unknown shape.
    """
    if isinstance(segmentation, dict):  # RLE
        counts = segmentation.get("counts")
        size = segmentation.get("size", [height, width])
        if isinstance(counts, list):
            return mask_utils.frPyObjects(segmentation, *size), 0
        if isinstance(counts, str):
            return {"size": list(size), "counts": counts.encode("ascii")}, 0
        if isinstance(counts, bytes):
            return {"size": list(size), "counts": counts}, 0
        raise ValueError(f"RLE 'counts' must be a list or a string, got {type(counts).__name__}")
    if isinstance(segmentation, list):
        polygons = [p for p in segmentation if _is_valid_polygon(p)]
        dropped = len(segmentation) - len(polygons)
        if not polygons:
            return None, dropped
        parts = mask_utils.frPyObjects([[float(v) for v in p] for p in polygons], height, width)
        return mask_utils.merge(parts, intersect=False), dropped
    raise ValueError(f"segmentation must be polygons or RLE, got {type(segmentation).__name__}")


def union_mask(rles: list[dict], height: int, width: int) -> np.ndarray:
    """Decode the union of RLEs to a ``(height, width)`` bool array (all False when empty)."""
    if not rles:
        return np.zeros((height, width), dtype=bool)
    merged = rles[0] if len(rles) == 1 else mask_utils.merge(rles, intersect=False)
    # pycocotools decodes column-major 0/1 bytes; one C-order copy viewed as bool keeps
    # row-wise consumers (PNG encoding, numpy indexing) on contiguous memory.
    return np.ascontiguousarray(mask_utils.decode(merged)).view(bool)


def segmentation_to_mask(segmentation: Any, height: int, width: int) -> tuple[np.ndarray, int]:
    """Decode one COCO segmentation to a bool mask; returns ``(mask, dropped_polygons)``."""
    rle, dropped = segmentation_to_rle(segmentation, height, width)
    return union_mask([rle] if rle is not None else [], height, width), dropped


def _png_chunk(tag: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))


def encode_mask_png(mask: np.ndarray) -> bytes:
    """PNG bytes of a binary mask as a 1-bit greyscale image (PIL mode ``"1"``, decodes to bool).

    Written directly (bit-packed rows, zlib level 1) because it is the hot loop of a build:
    about 10x faster than PIL's encoder of an 8-bit mask, and the files are half the size.

    >>> import io
    >>> from PIL import Image
    >>> png = encode_mask_png(np.eye(3, dtype=bool))
    >>> decoded = Image.open(io.BytesIO(png))
    >>> decoded.mode, np.asarray(decoded).tolist()[0]
    ('1', [True, False, False])
    """
    height, width = mask.shape
    packed = np.packbits(np.ascontiguousarray(mask), axis=1)  # packbits reads nonzero as 1
    scanlines = np.zeros((height, packed.shape[1] + 1), dtype=np.uint8)  # column 0: filter "none"
    scanlines[:, 1:] = packed
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # 1 bit, greyscale
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", zlib.compress(scanlines.tobytes(), 1))
        + _png_chunk(b"IEND", b"")
    )


def bbox_of(mask: np.ndarray) -> list[float]:
    """``[x, y, w, h]`` of a mask's pixels (zeros for an empty mask)."""
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return [0.0, 0.0, 0.0, 0.0]
    return [float(xs.min()), float(ys.min()), float(xs.max() - xs.min() + 1), float(ys.max() - ys.min() + 1)]
