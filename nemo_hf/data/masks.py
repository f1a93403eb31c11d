"""COCO segmentations → binary masks, the way RIS needs them.

A RefCOCO object is often several polygon parts. The original ``refer`` toolkit *sums*
the decoded parts, so pixels where parts overlap get value 2, which some code bases then
read as background. Here the parts are merged as a **union** (pycocotools ``merge`` with
``intersect=False``). Compressed RLE (``counts`` a string, as JSON stores it) and
uncompressed RLE (``counts`` a list) are accepted too. Malformed polygons — odd length,
fewer than 3 points, non-finite numbers — are dropped and counted by the caller.

A build never decodes a mask to one byte per pixel: COCO's RLE is column-major, so it is
read as vertical runs (:class:`MaskRuns`) and written straight into the bit-packed rows
of a 1-bit PNG. That skips pycocotools' byte-per-pixel decode, the column-major →
row-major copy PNG rows would need after it, and the bit-packing.

>>> square = [[0, 0, 4, 0, 4, 4, 0, 4]]
>>> mask, dropped = segmentation_to_mask(square, height=6, width=6)
>>> int(mask.sum()), dropped
(16, 0)
"""

from __future__ import annotations

import functools
import math
import struct
import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

_MAX_GROUPS = 7  # 5-bit groups of one RLE number: enough for any count of a 2**32-pixel image


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
        rle = _compressed_rle(segmentation, height, width)
        _checked_counts(rle, height, width)  # pycocotools' C code trusts the runs: check them first
        return rle, 0
    if isinstance(segmentation, list):
        polygons = [p for p in segmentation if _is_valid_polygon(p)]
        dropped = len(segmentation) - len(polygons)
        if not polygons:
            return None, dropped
        # pycocotools converts each polygon (list or tuple) to doubles itself
        parts = mask_utils.frPyObjects(polygons, height, width)
        return mask_utils.merge(parts, intersect=False), dropped
    raise ValueError(f"segmentation must be polygons or RLE, got {type(segmentation).__name__}")


def _compressed_rle(segmentation: dict, height: int, width: int) -> dict:
    counts = segmentation.get("counts")
    size = segmentation.get("size", [height, width])
    if isinstance(counts, list):
        try:
            return mask_utils.frPyObjects(segmentation, *size)
        except OverflowError:  # numpy refuses a negative or huge run as uint32
            raise ValueError("RLE 'counts' hold a run length outside 0..2**32-1") from None
    if isinstance(counts, str):
        return {"size": list(size), "counts": counts.encode("ascii")}
    if isinstance(counts, bytes):
        return {"size": list(size), "counts": counts}
    raise ValueError(f"RLE 'counts' must be a list or a string, got {type(counts).__name__}")


def _rle_counts(encoded: bytes) -> np.ndarray:
    """Run lengths of a compressed COCO RLE string (pycocotools' ``rleFrString``, vectorised).

    Each number is 5-bit groups (low first) offset by 48, bit 0x20 meaning "more groups
    follow", bit 0x10 of the last group the sign; numbers after the third are deltas to the
    number two places before. Raises ``ValueError`` for bytes no encoder writes.
    """
    characters = np.frombuffer(encoded, dtype=np.uint8)
    if characters.size == 0:
        return np.zeros(0, dtype=np.int64)
    if characters.min() < 48 or characters.max() > 111:
        raise ValueError("RLE counts hold a byte outside the COCO alphabet ('0'..'o')")
    digits = characters.astype(np.int64) - 48
    last = np.flatnonzero(digits < 32)  # the final group of each number: no 0x20 bit
    if last.size == 0 or last[-1] != digits.size - 1:
        raise ValueError("RLE counts end in the middle of a number")
    first = np.concatenate(([0], last[:-1] + 1))
    groups = last - first + 1
    if groups.max() > _MAX_GROUPS:
        raise ValueError(f"RLE counts hold a number of more than {_MAX_GROUPS} groups")
    shifts = 5 * (np.arange(digits.size) - np.repeat(first, groups))
    values = np.add.reduceat((digits & 31) << shifts, first)
    values -= (digits[last] >> 4 & 1) << (5 * groups)  # sign-extend negative deltas
    np.cumsum(values[1::2], out=values[1::2])
    np.cumsum(values[2::2], out=values[2::2])
    return values


def _checked_counts(rle: dict, height: int, width: int) -> np.ndarray:
    """Run lengths of a compressed RLE of a ``(height, width)`` mask; ``ValueError`` if it is not one."""
    size = [int(v) for v in rle["size"]]
    if size != [height, width]:
        raise ValueError(f"RLE size {size[0]}x{size[1]} differs from the image's {height}x{width}")
    counts = _rle_counts(rle["counts"])
    if (counts < 0).any():
        raise ValueError("RLE counts hold a negative run length")
    if int(counts.sum()) != height * width:
        raise ValueError(f"RLE runs cover {int(counts.sum())} pixels, not the image's {height * width}")
    return counts


def _png_chunk(tag: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))


@functools.lru_cache(maxsize=256)
def _png_signature_and_header(width: int, height: int) -> bytes:
    """PNG signature and IHDR of a 1-bit greyscale image; COCO has few distinct sizes."""
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header)


_PNG_END = _png_chunk(b"IEND", b"")


def _vertical_runs(counts: np.ndarray, height: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(x, y0, y1)`` of column-major run lengths, a run that wraps into the next column split
    at the column boundary."""
    ends = np.cumsum(counts)
    stop = ends[1::2]  # runs alternate background / foreground, background first
    start = ends[0::2][: stop.size]
    keep = stop > start
    start, stop = start[keep], stop[keep]
    first_column = start // height
    columns = (stop - 1) // height - first_column + 1
    if columns.size and columns.max() > 1:
        starts_at = np.cumsum(columns) - columns
        x = np.arange(int(columns.sum())) + np.repeat(first_column - starts_at, columns)
        start, stop = np.repeat(start, columns), np.repeat(stop, columns)
    else:
        x = first_column
    return x, np.maximum(start - x * height, 0), np.minimum(stop - x * height, height)


@dataclass(frozen=True, eq=False)
class MaskRuns:
    """A binary mask as vertical runs: column ``x[i]`` is set on rows ``y0[i] <= y < y1[i]``.

    That is how COCO's column-major RLE already lies, so it converts without touching every
    pixel; :meth:`png` packs it into PNG rows directly.

    >>> rle = mask_utils.encode(np.asfortranarray(np.eye(3, dtype=np.uint8)))
    >>> runs = MaskRuns.from_rles([rle], 3, 3)
    >>> runs.to_array().astype(int).tolist(), runs.bbox()
    ([[1, 0, 0], [0, 1, 0], [0, 0, 1]], [0.0, 0.0, 3.0, 3.0])
    """

    height: int
    width: int
    x: np.ndarray
    y0: np.ndarray
    y1: np.ndarray

    @classmethod
    def from_rles(cls, rles: list[dict], height: int, width: int) -> MaskRuns:
        """The union of compressed RLEs (all empty when there are none).

        Each RLE is checked — size, alphabet, runs covering the image exactly — before
        pycocotools merges it: its C code trusts the runs and would write past its buffers.
        """
        counts = [_checked_counts(rle, height, width) for rle in rles]
        if len(rles) > 1:
            union = _rle_counts(mask_utils.merge(rles, intersect=False)["counts"])
        else:
            union = counts[0] if counts else np.array([height * width], dtype=np.int64)
        return cls(height, width, *_vertical_runs(union, height))

    def _scanlines(self) -> np.ndarray:
        """``(height, 1 + ceil(width / 8))`` bytes: PNG filter byte 0, then the row's bits."""
        row_bytes = 1 + (self.width + 7) // 8
        toggles = np.zeros((self.height + 1, -(-row_bytes // 8) * 8), dtype=np.uint8)
        byte, bit = 1 + (self.x >> 3), (128 >> (self.x & 7)).astype(np.uint8)
        # a run flips its bit on at y0 and off at y1; XOR-accumulating down the rows (eight
        # bytes at a time) turns the flips into the pixels. ufunc.at: flips may share a byte.
        np.bitwise_xor.at(toggles, (self.y0, byte), bit)
        np.bitwise_xor.at(toggles, (self.y1, byte), bit)
        rows = np.bitwise_xor.accumulate(toggles[: self.height].view(np.uint64), axis=0)
        return rows.view(np.uint8)[:, :row_bytes]

    def png(self) -> bytes:
        """PNG bytes as a 1-bit greyscale image (PIL mode ``"1"``, decodes to bool).

        Written directly because it is the hot loop of a build: PIL's encoder of an 8-bit
        mask costs several times the decode, and 1-bit files are half the size.

        >>> import io
        >>> from PIL import Image
        >>> rle = mask_utils.encode(np.asfortranarray(np.eye(3, dtype=np.uint8)))
        >>> decoded = Image.open(io.BytesIO(MaskRuns.from_rles([rle], 3, 3).png()))
        >>> decoded.mode, np.asarray(decoded).tolist()[0]
        ('1', [True, False, False])
        """
        return (
            _png_signature_and_header(self.width, self.height)
            + _png_chunk(b"IDAT", zlib.compress(self._scanlines().tobytes(), 1))
            + _PNG_END
        )

    def to_array(self) -> np.ndarray:
        """The mask as a ``(height, width)`` bool array."""
        return np.unpackbits(self._scanlines()[:, 1:], axis=1, count=self.width).view(bool)

    def bbox(self) -> list[float]:
        """``[x, y, w, h]`` of the mask's pixels (zeros for an empty mask)."""
        if self.x.size == 0:
            return [0.0, 0.0, 0.0, 0.0]
        left, top = int(self.x.min()), int(self.y0.min())
        return [float(left), float(top), float(self.x.max() + 1 - left), float(self.y1.max() - top)]


def segmentation_to_mask(segmentation: Any, height: int, width: int) -> tuple[np.ndarray, int]:
    """Decode one COCO segmentation to a bool mask; returns ``(mask, dropped_polygons)``."""
    rle, dropped = segmentation_to_rle(segmentation, height, width)
    return MaskRuns.from_rles([rle] if rle is not None else [], height, width).to_array(), dropped
