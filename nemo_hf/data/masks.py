"""COCO segmentations → binary masks, the way RIS needs them.

A RefCOCO object is often several polygon parts. The original ``refer`` toolkit *sums*
the decoded parts, so pixels where parts overlap get value 2, which some code bases then
read as background. Here the parts are merged as a **union** (pycocotools ``merge`` with
``intersect=False``). Compressed RLE (``counts`` a string, as JSON stores it) and
uncompressed RLE (``counts`` a list) are accepted too. Malformed polygons — odd length,
fewer than 3 points, non-finite numbers, JSON ``true``/``false`` — are dropped and counted
by the caller; an RLE whose size or counts hold anything but integers is refused.

pycocotools' C code trusts what it is given, so everything is checked before it runs, and
what it may allocate is bounded whatever the file says: an RLE must cover exactly its
image, an image may have at most :data:`MAX_SIDE` pixels a side and :data:`MAX_PIXELS` in
all, a polygon reaching far outside its image is clipped first, and an annotation's
polygons may outline at most :data:`MAX_OUTLINE` pixels.

A build never decodes a mask to one byte per pixel: COCO's RLE is column-major, so it is
read as vertical runs (:class:`MaskRuns`) and written straight into the bit-packed rows
of a 1-bit PNG. That skips pycocotools' byte-per-pixel decode, the column-major →
row-major copy PNG rows would need after it, and the bit-packing. A build's masks go
through those steps a batch at a time, since numpy's cost per call outweighs one mask's work.

>>> square = [[0, 0, 4, 0, 4, 4, 0, 4]]
>>> mask, dropped = segmentation_to_mask(square, height=6, width=6)
>>> int(mask.sum()), dropped
(16, 0)
"""

from __future__ import annotations

import functools
import math
import reprlib
import struct
import zlib
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

import numpy as np
from pycocotools import mask as mask_utils

_MAX_GROUPS = 7  # 5-bit groups of one RLE number: enough for any count of a 2**32-pixel image
# pycocotools draws polygons at 5x scale in C ints and counts pixels in 32-bit runs: a JPEG's
# largest side keeps both far from overflowing (so does the margin polygons are clipped to)
MAX_SIDE = 65535
MAX_PIXELS = 1 << 28  # one mask in memory: 32 MB of bits, twice that while it is drawn
# pycocotools steps along a polygon's edges at 1/5 pixel, holding ~120 bytes per pixel of
# outline: at most 60 MB per annotation. Real outlines are thousands of pixels long.
MAX_OUTLINE = 1 << 19


def check_mask_size(height: int, width: int) -> None:
    """``ValueError`` unless masks of ``height`` x ``width`` pixels may be drawn.

    >>> check_mask_size(480, 640)
    >>> check_mask_size(238, 2**31)
    Traceback (most recent call last):
    ...
    ValueError: a mask of 238x2147483648 pixels is outside 1x1 .. 65535x65535 and 268435456 pixels
    """
    if not (1 <= height <= MAX_SIDE and 1 <= width <= MAX_SIDE and height * width <= MAX_PIXELS):
        raise ValueError(f"a mask of {height}x{width} pixels is outside 1x1 .. {MAX_SIDE}x{MAX_SIDE} "
                         f"and {MAX_PIXELS} pixels")


def _clip(points: np.ndarray, left: float, right: float, top: float, bottom: float) -> np.ndarray:
    """A polygon's ``(n, 2)`` vertices clipped to a rectangle (Sutherland–Hodgman); may be empty."""
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        for axis, bound, keep_above in ((0, left, True), (0, right, False), (1, top, True), (1, bottom, False)):
            if len(points) == 0:
                break
            inside = points[:, axis] >= bound if keep_above else points[:, axis] <= bound
            previous = np.roll(points, 1, axis=0)
            # where an edge crosses the bound, the crossing comes before the edge's end point
            fraction = (bound - previous[:, axis]) / (points[:, axis] - previous[:, axis])
            crossing = previous + fraction[:, None] * (points - previous)
            crossing[:, axis] = bound
            emitted = np.stack([inside != np.roll(inside, 1), inside], axis=1)
            points = np.stack([crossing, points], axis=1)[emitted]
    return points


def _outline(points: np.ndarray) -> float:
    """Length of a closed polygon as pycocotools walks it: the larger of |dx|, |dy| per edge."""
    return float(np.abs(points - np.roll(points, 1, axis=0)).max(axis=1).sum())


def drawable_polygons(segmentation: list, height: int, width: int) -> tuple[list, int]:
    """The polygons of ``segmentation`` pycocotools may draw on a ``height`` x ``width`` image,
    and how many were dropped.

    Malformed polygons (``true``/``false`` among the coordinates included) are dropped.
    Twice the sum of a polygon's absolute coordinates bounds the outline pycocotools walks
    (and every coordinate): a polygon within :data:`MAX_OUTLINE` of it goes as it is, a
    larger one is first clipped to a margin of the image's own size around the image (the
    same shape inside the image, up to pycocotools' rounding of the new vertices) and then
    measured exactly. When the polygons outline more than :data:`MAX_OUTLINE` pixels
    together, all are dropped: no real object's are that long, and drawing them would cost
    memory in proportion.

    >>> drawable_polygons([[0, 0, 4, 0, 4, 4], [1, 2, 3], [-1e12, 1, 1e12, 1, 1e12, 3, -1e12, 3]], 6, 6)
    ([[0, 0, 4, 0, 4, 4], [-6.0, 1.0, 12.0, 1.0, 12.0, 3.0, -6.0, 3.0]], 1)
    """
    kept: list = []
    lengths: list[float] = []  # each kept polygon's outline, or a bound of it
    for polygon in segmentation:
        if not isinstance(polygon, (list, tuple)) or len(polygon) < 6 or len(polygon) % 2:
            continue
        if bool in map(type, polygon):  # JSON true/false: Python would draw them as 1 and 0
            continue
        try:  # in C: a non-number raises, a NaN or an infinity makes the sum non-finite
            length = 2 * sum(map(abs, polygon))
            if not math.isfinite(length):
                continue
        except (TypeError, OverflowError):
            continue
        if length > MAX_OUTLINE:
            points = _within_margin(np.asarray(polygon, dtype=np.float64).reshape(-1, 2), height, width)
            if points is None:
                continue
            polygon, length = points.ravel().tolist(), _outline(points)
        kept.append(polygon)
        lengths.append(length)
    if sum(lengths) > MAX_OUTLINE and sum(_outline(np.reshape(p, (-1, 2))) for p in kept) > MAX_OUTLINE:
        return [], len(segmentation)
    return kept, len(segmentation) - len(kept)


def _within_margin(points: np.ndarray, height: int, width: int) -> np.ndarray | None:
    """A polygon's vertices, clipped to the image and a margin of its size around it where
    they reach beyond; ``None`` when nothing finite of at least 3 vertices is left."""
    low, high = np.array([-width, -height]), np.array([2 * width, 2 * height])
    if (points < low).any() or (points > high).any():
        points = _clip(points, -width, 2 * width, -height, 2 * height)
    return points if len(points) >= 3 and np.isfinite(points).all() else None


def segmentation_to_rle(segmentation: Any, height: int, width: int) -> tuple[dict | None, int]:
    """Encode a COCO segmentation as one RLE (union of its parts).

    Returns ``(rle, dropped_polygons)``; ``rle`` is ``None`` when nothing valid is left.
    Raises ``ValueError`` for a segmentation of an unknown shape, a malformed RLE, or an
    image size outside :func:`check_mask_size`.
    """
    check_mask_size(height, width)
    if isinstance(segmentation, dict):  # RLE
        rle = _compressed_rle(segmentation, height, width)
        _check_rle(rle, height, width)  # pycocotools' C code trusts the runs: check them first
        return rle, 0
    if isinstance(segmentation, list):
        polygons, dropped = drawable_polygons(segmentation, height, width)
        if not polygons:
            return None, dropped
        # pycocotools converts each polygon (list or tuple) to doubles itself
        parts = mask_utils.frPyObjects(polygons, height, width)
        return mask_utils.merge(parts, intersect=False), dropped
    raise ValueError(f"segmentation must be polygons or RLE, got {type(segmentation).__name__}")


def _compressed_rle(segmentation: dict, height: int, width: int) -> dict:
    counts = segmentation.get("counts")
    size = segmentation.get("size", [height, width])
    if not isinstance(size, (list, tuple)) or list(size) != [height, width] or bool in map(type, size):
        raise ValueError(f"RLE size {_size_text(size)} differs from the image's {height}x{width}")
    if isinstance(counts, list):
        kinds = set(map(type, counts))
        if not kinds <= {int}:  # numpy would take true as 1, and cut 1.5 down to 1
            raise ValueError(f"RLE 'counts' must be integers, got {min(k.__name__ for k in kinds - {int})}")
        try:
            return mask_utils.frPyObjects(segmentation, height, width)
        except OverflowError:  # numpy refuses a negative or huge run as uint32
            raise ValueError("RLE 'counts' hold a run length outside 0..2**32-1") from None
    if isinstance(counts, str):
        return {"size": [height, width], "counts": counts.encode("ascii")}
    if isinstance(counts, bytes):
        return {"size": [height, width], "counts": counts}
    raise ValueError(f"RLE 'counts' must be a list or a string, got {type(counts).__name__}")


def _size_text(size: Any) -> str:
    if isinstance(size, (list, tuple)) and len(size) == 2:
        return f"{size[0]}x{size[1]}"
    return reprlib.repr(size)


def _segmented_cumsum(values: np.ndarray, segment_starts: np.ndarray) -> np.ndarray:
    """Cumulative sums of ``values`` that start again at each index of ``segment_starts`` (sorted, from 0)."""
    total = np.cumsum(values)
    if total.size == 0:
        return total
    before = total[segment_starts] - values[segment_starts]
    return total - np.repeat(before, np.diff(np.append(segment_starts, values.size)))


def _rle_counts_of_many(encoded: Sequence[bytes]) -> tuple[np.ndarray, np.ndarray]:
    """Run lengths of many compressed COCO RLE strings at once (pycocotools' ``rleFrString``, vectorised).

    Returns ``(counts, offsets)``: string ``i``'s runs are ``counts[offsets[i]:offsets[i + 1]]``.
    One pass over all the strings, because numpy's cost per call, not the work, dominates a
    single mask's few hundred characters.

    Each number is 5-bit groups (low first) offset by 48, bit 0x20 meaning "more groups
    follow", bit 0x10 of the last group the sign; numbers after the third are deltas to the
    number two places before. Raises ``ValueError`` for bytes no encoder writes.
    """
    lengths = np.array([len(e) for e in encoded], dtype=np.int64)
    string_ends = np.cumsum(lengths)
    characters = np.frombuffer(b"".join(encoded), dtype=np.uint8)
    if characters.size and (characters.min() < 48 or characters.max() > 111):
        raise ValueError("RLE counts hold a byte outside the COCO alphabet ('0'..'o')")
    digits = characters.astype(np.int64) - 48
    if (digits[string_ends[lengths > 0] - 1] >= 32).any():  # the final group of a number has no 0x20 bit
        raise ValueError("RLE counts end in the middle of a number")
    last = np.flatnonzero(digits < 32)  # the final group of each number
    offsets = np.searchsorted(last, np.append(0, string_ends))
    if last.size == 0:
        return np.zeros(0, dtype=np.int64), offsets
    first = np.append(0, last[:-1] + 1)
    groups = last - first + 1
    if groups.max() > _MAX_GROUPS:
        raise ValueError(f"RLE counts hold a number of more than {_MAX_GROUPS} groups")
    shifts = 5 * (np.arange(digits.size) - np.repeat(first, groups))
    values = np.add.reduceat((digits & 31) << shifts, first)
    values -= (digits[last] >> 4 & 1) << (5 * groups)  # sign-extend negative deltas
    # undo the deltas: within each string, the odd-placed numbers and the even-placed ones
    # from the third on are running sums
    place = np.arange(values.size) - np.repeat(offsets[:-1], np.diff(offsets))
    for chain in (place % 2 == 1, (place % 2 == 0) & (place >= 2)):
        where = np.flatnonzero(chain)
        starts = np.flatnonzero(np.diff(place[where], prepend=place.size + 1) <= 0)
        values[where] = _segmented_cumsum(values[where], starts)
    return values, offsets


def _check_counts(counts: np.ndarray, offsets: np.ndarray, rles: Sequence[dict],
                  sizes: Sequence[tuple[int, int]]) -> None:
    """``ValueError`` unless each RLE's runs cover exactly its ``(height, width)`` mask."""
    for rle, (height, width) in zip(rles, sizes):
        size = [int(v) for v in rle["size"]]
        if size != [height, width]:
            raise ValueError(f"RLE size {size[0]}x{size[1]} differs from the image's {height}x{width}")
    if not rles:
        return
    if counts.size and counts.min() < 0:
        raise ValueError("RLE counts hold a negative run length")
    covered = np.add.reduceat(np.append(counts, 0), offsets[:-1]) * (offsets[1:] > offsets[:-1])
    pixels = np.array([h * w for h, w in sizes], dtype=np.int64)
    wrong = np.flatnonzero(covered != pixels)
    if wrong.size:
        raise ValueError(f"RLE runs cover {int(covered[wrong[0]])} pixels, not the image's {int(pixels[wrong[0]])}")


def _check_rle(rle: dict, height: int, width: int) -> None:
    """``ValueError`` unless ``rle`` is a well-formed compressed RLE of a ``(height, width)`` mask."""
    counts, offsets = _rle_counts_of_many([rle["counts"]])
    _check_counts(counts, offsets, [rle], [(height, width)])


def _png_chunk(tag: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))


@functools.lru_cache(maxsize=256)
def _png_signature_and_header(width: int, height: int) -> bytes:
    """PNG signature and IHDR of a 1-bit greyscale image; COCO has few distinct sizes."""
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header)


_PNG_END = _png_chunk(b"IEND", b"")
_SCANLINE_BYTES = 1 << 20  # scanline memory of one pass over masks: about a cache's worth, not more


@dataclass(frozen=True, eq=False)
class MaskRuns:
    """Binary masks as vertical runs: run ``i`` sets column ``x[i]`` of mask ``owner[i]`` on rows
    ``y0[i] <= y < y1[i]``.

    That is how COCO's column-major RLE already lies, so it converts without touching every
    pixel, and :meth:`pngs` packs it into PNG rows directly. Many masks go through each step
    together: numpy's cost per call, not the work, dominates one mask.

    >>> rle = mask_utils.encode(np.asfortranarray(np.eye(3, dtype=np.uint8)))
    >>> runs = MaskRuns.from_rles([[rle], []], [(3, 3), (2, 4)])
    >>> [m.astype(int).tolist() for m in runs.arrays()], runs.bboxes()
    ([[[1, 0, 0], [0, 1, 0], [0, 0, 1]], [[0, 0, 0, 0], [0, 0, 0, 0]]], [[0.0, 0.0, 3.0, 3.0], [0.0, 0.0, 0.0, 0.0]])
    """

    heights: np.ndarray
    widths: np.ndarray
    owner: np.ndarray
    x: np.ndarray
    y0: np.ndarray
    y1: np.ndarray

    @classmethod
    def from_rles(cls, masks: Sequence[Sequence[dict]], sizes: Sequence[tuple[int, int]]) -> MaskRuns:
        """Mask ``i`` is the union of the compressed RLEs ``masks[i]`` (empty when there are
        none), of ``sizes[i] = (height, width)``.

        Every RLE is checked — size, alphabet, runs covering the mask exactly — before
        pycocotools merges any: its C code trusts the runs and would write past its buffers.
        """
        for height, width in sizes:
            check_mask_size(height, width)
        rles = [rle for parts in masks for rle in parts]
        counts, offsets = _rle_counts_of_many([rle["counts"] for rle in rles])
        _check_counts(counts, offsets, rles, [size for parts, size in zip(masks, sizes) for _ in parts])
        # one RLE stands for itself; several merge (in C) into one more string; none is all background
        merged = [mask_utils.merge(list(parts), intersect=False)["counts"] for parts in masks if len(parts) > 1]
        union_counts, union_offsets = _rle_counts_of_many(merged)
        pieces, taken, unions = [], 0, 0
        for parts, (height, width) in zip(masks, sizes):
            if len(parts) == 1:
                pieces.append(counts[offsets[taken]:offsets[taken + 1]])
            elif parts:
                pieces.append(union_counts[union_offsets[unions]:union_offsets[unions + 1]])
                unions += 1
            else:
                pieces.append(np.array([height * width], dtype=np.int64))
            taken += len(parts)
        heights = np.array([h for h, _ in sizes], dtype=np.int64)
        widths = np.array([w for _, w in sizes], dtype=np.int64)
        lengths = np.array([p.size for p in pieces], dtype=np.int64)
        runs = np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.int64)
        return cls(heights, widths, *_vertical_runs(runs, lengths, heights))

    def __len__(self) -> int:
        return int(self.heights.size)

    def _each_scanlines(self) -> Iterator[tuple[int, int, np.ndarray]]:
        """``(height, width, scanlines)`` of each mask in order: its PNG rows, filter byte 0 then the bits.

        Masks are drawn in consecutive blocks of about ``_SCANLINE_BYTES``, at least one each.
        """
        row_bytes = 1 + (self.widths + 7) // 8
        first = 0
        while first < len(self):
            stop = first + 1
            width = -(-int(row_bytes[first]) // 8) * 8
            rows = int(self.heights[first]) + 1
            while stop < len(self):
                wider = max(width, -(-int(row_bytes[stop]) // 8) * 8)
                if wider * (rows + int(self.heights[stop]) + 1) > _SCANLINE_BYTES:
                    break
                width, rows, stop = wider, rows + int(self.heights[stop]) + 1, stop + 1
            block, row_starts = self._scanlines(first, stop, rows, width)
            for i, start in zip(range(first, stop), row_starts.tolist()):
                height, mask_width = int(self.heights[i]), int(self.widths[i])
                yield height, mask_width, block[start:start + height, : int(row_bytes[i])]
            first = stop

    def _scanlines(self, first: int, stop: int, rows: int, width: int) -> tuple[np.ndarray, np.ndarray]:
        row_starts = np.append(0, np.cumsum(self.heights[first:stop] + 1)[:-1])
        toggles = np.zeros((rows, width), dtype=np.uint8)
        runs = slice(*np.searchsorted(self.owner, [first, stop]))
        x, base = self.x[runs], row_starts[self.owner[runs] - first]
        byte, bit = 1 + (x >> 3), (128 >> (x & 7)).astype(np.uint8)
        # a run flips its bit on at y0 and off at y1; XOR-accumulating down the rows (eight
        # bytes at a time) turns the flips into the pixels. Each mask's flips cancel by the
        # spare row below it, so one accumulation serves them all. ufunc.at: flips may share a byte.
        np.bitwise_xor.at(toggles, (base + self.y0[runs], byte), bit)
        np.bitwise_xor.at(toggles, (base + self.y1[runs], byte), bit)
        return np.bitwise_xor.accumulate(toggles.view(np.uint64), axis=0).view(np.uint8), row_starts

    def pngs(self) -> list[bytes]:
        """PNG bytes of each mask as a 1-bit greyscale image (PIL mode ``"1"``, decodes to bool).

        Written directly because it is the hot loop of a build: PIL's encoder of an 8-bit
        mask costs several times the decode, and 1-bit files are half the size.

        >>> import io
        >>> from PIL import Image
        >>> rle = mask_utils.encode(np.asfortranarray(np.eye(3, dtype=np.uint8)))
        >>> png, = MaskRuns.from_rles([[rle]], [(3, 3)]).pngs()
        >>> decoded = Image.open(io.BytesIO(png))
        >>> decoded.mode, np.asarray(decoded).tolist()[0]
        ('1', [True, False, False])
        """
        out = []
        for height, width, scanlines in self._each_scanlines():
            # Z_RLE: a mask's rows are long runs of one byte, which run-length matching
            # alone catches; faster than deflate's hash chains, and smaller
            deflate = zlib.compressobj(1, zlib.DEFLATED, 15, 8, zlib.Z_RLE)
            data = deflate.compress(scanlines.tobytes()) + deflate.flush()
            out.append(_png_signature_and_header(width, height) + _png_chunk(b"IDAT", data) + _PNG_END)
        return out

    def arrays(self) -> list[np.ndarray]:
        """Each mask as a ``(height, width)`` bool array."""
        return [np.unpackbits(scanlines[:, 1:], axis=1, count=width).view(bool)
                for _, width, scanlines in self._each_scanlines()]

    def bboxes(self) -> list[list[float]]:
        """``[x, y, w, h]`` of each mask's pixels (zeros for an empty mask)."""
        boxes = [[0.0, 0.0, 0.0, 0.0] for _ in range(len(self))]
        if self.owner.size == 0:
            return boxes
        starts = np.flatnonzero(np.diff(self.owner, prepend=-1))
        extremes = zip(self.owner[starts].tolist(), *(reduce.reduceat(values, starts).tolist() for reduce, values in (
            (np.minimum, self.x), (np.maximum, self.x), (np.minimum, self.y0), (np.maximum, self.y1))))
        for i, left, right, top, bottom in extremes:
            boxes[i] = [float(left), float(top), float(right + 1 - left), float(bottom - top)]
        return boxes


def _vertical_runs(counts: np.ndarray, lengths: np.ndarray, heights: np.ndarray) -> tuple[np.ndarray, ...]:
    """``(owner, x, y0, y1)`` of masks' column-major run lengths (mask ``i`` has the next
    ``lengths[i]`` counts and ``heights[i]`` rows), a run that wraps into the next column split
    at the column boundary."""
    mask_of = np.repeat(np.arange(lengths.size), lengths)
    ends = _segmented_cumsum(counts, np.append(0, np.cumsum(lengths)[:-1])[lengths > 0])
    place = np.arange(counts.size) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    foreground = np.flatnonzero(place % 2 == 1)  # runs alternate background / foreground, background first
    owner, start, stop = mask_of[foreground], ends[foreground - 1], ends[foreground]
    keep = stop > start
    owner, start, stop = owner[keep], start[keep], stop[keep]
    height = heights[owner]
    first_column = start // height
    columns = (stop - 1) // height - first_column + 1
    if columns.size and columns.max() > 1:
        starts_at = np.cumsum(columns) - columns
        x = np.arange(int(columns.sum())) + np.repeat(first_column - starts_at, columns)
        owner, start, stop, height = (np.repeat(v, columns) for v in (owner, start, stop, height))
    else:
        x = first_column
    return owner, x, np.maximum(start - x * height, 0), np.minimum(stop - x * height, height)


def segmentation_to_mask(segmentation: Any, height: int, width: int) -> tuple[np.ndarray, int]:
    """Decode one COCO segmentation to a bool mask; returns ``(mask, dropped_polygons)``."""
    rle, dropped = segmentation_to_rle(segmentation, height, width)
    (mask,) = MaskRuns.from_rles([[rle] if rle is not None else []], [(height, width)]).arrays()
    return mask, dropped
