"""Pool images shrunk once to the largest cell a mosaic can give them: cheap mosaic cells.

In a mosaic every image (the negatives, and the query) is drawn into a cell, and no cell
is larger than :func:`largest_cell` for a given grid, canvas side and cross-point jitter.
Decoding the full-size JPEG for a cell pays the whole entropy decoding of the photo, which
DCT scaling cannot skip (see BENCHMARKS.md); decoding a JPEG that is already about the
cell's size costs a fraction of that. So the pool's images are shrunk once, keeping their
aspect ratio, to the smallest size whose width and height still cover the largest cell
(never enlarged), and stored as JPEG (quality :data:`THUMBNAIL_QUALITY`, no chroma
subsampling) or, up to :data:`RAW_MAX_PIXELS`, as uncompressed BMP: at such sizes opening a
JPEG (PIL parses its markers in Python) costs more than its pixels, while a BMP reads as a
plain copy. A cell drawn from such a copy is resized down from at least its own size, like
a cell drawn from the original, so it differs from it only by the second resampling and
the re-encoding (tested: a mean absolute difference of one or two grey levels on
photo-like noise).

Example:
    >>> import io
    >>> from PIL import Image
    >>> largest_cell(grid=2, size=480, jitter=0.0)
    (240, 240)
    >>> buf = io.BytesIO(); Image.new("RGB", (640, 480), "teal").save(buf, "JPEG")
    >>> Image.open(io.BytesIO(shrink_to_cover(buf.getvalue(), (240, 240)))).size
    (320, 240)
"""

from __future__ import annotations

import io
import itertools
import math
from typing import Any

from datasets import Dataset, Features
from datasets import Image as DatasetImage

from nemo_hf.mosaic.cells import IMAGE_RESAMPLE, CellSource, ImageSource
from nemo_hf.mosaic.layout import grid_layout

__all__ = ["RAW_MAX_PIXELS", "THUMBNAIL_QUALITY", "PoolShrinker", "largest_cell", "shrink_pool", "shrink_to_cover"]

THUMBNAIL_QUALITY = 95
"""JPEG quality of the shrunk copies: high, so re-encoding costs little detail."""

RAW_MAX_PIXELS = 64 * 64
"""Copies of at most this many pixels are stored as BMP (12 KB at most) instead of JPEG."""


def largest_cell(grid: int, size: int, jitter: float) -> tuple[int, int]:
    """``(width, height)`` that no cell of any ``grid`` layout on a ``size`` canvas exceeds.

    Cross points are drawn from ``[0.5 - jitter, 0.5 + jitter]`` on each axis and a cell's
    extent moves monotonically with them, so the extreme cross points give the bound.

    >>> largest_cell(grid=2, size=100, jitter=0.25)
    (75, 75)
    """
    extremes = sorted({0.5 - jitter, 0.5, 0.5 + jitter})
    cells = [
        box
        for cross_point in itertools.product(extremes, repeat=2)
        for box in grid_layout(grid, size, cross_point=cross_point)
    ]
    return max(box.width for box in cells), max(box.height for box in cells)


def shrink_to_cover(
    source: ImageSource, cover: tuple[int, int], quality: int = THUMBNAIL_QUALITY, raw_max_pixels: int = RAW_MAX_PIXELS
) -> bytes:
    """``source`` shrunk (aspect kept) to the smallest size covering ``cover``, as image bytes.

    ``cover`` is ``(width, height)``. An image that is already no larger than needed is
    re-encoded at its own size (in RGB), never enlarged. Decoding uses the stored pixel
    orientation, as mosaic cells do. JPEG, or BMP up to ``raw_max_pixels``.
    """
    opened = CellSource(source)
    width, height = opened.size
    scale = min(1.0, max(cover[0] / width, cover[1] / height))
    target = (min(width, math.ceil(width * scale)), min(height, math.ceil(height * scale)))
    decoded, box = opened.decode(target)
    shrunk = decoded if decoded.size == target and box is None else decoded.resize(target, IMAGE_RESAMPLE, box=box)
    buffer = io.BytesIO()
    if shrunk.width * shrunk.height <= raw_max_pixels:
        shrunk.save(buffer, "BMP")
    else:  # 4:4:4: chroma subsampling would cost as much detail as the resize itself
        shrunk.save(buffer, "JPEG", quality=quality, subsampling=0)
    return buffer.getvalue()


class PoolShrinker:
    """``Dataset.map`` function (batched) shrinking an ``image`` column with :func:`shrink_to_cover`.

    A small picklable object, so ``datasets`` fingerprints it by its attributes (everything
    that decides the bytes) and caches the result next to the pool's own files.
    """

    def __init__(
        self, cover: tuple[int, int], quality: int = THUMBNAIL_QUALITY, raw_max_pixels: int = RAW_MAX_PIXELS
    ) -> None:
        self.cover = (int(cover[0]), int(cover[1]))
        self.quality = int(quality)
        self.raw_max_pixels = int(raw_max_pixels)

    def __call__(self, batch: dict[str, list[Any]]) -> dict[str, list[Any]]:
        shrunk = []
        for image in batch["image"]:
            try:
                shrunk.append({"bytes": shrink_to_cover(image, self.cover, self.quality, self.raw_max_pixels),
                                "path": None})
            except Exception as error:  # name the image: the pool can hold thousands
                where = image.get("path") if isinstance(image, dict) else None
                raise ValueError(f"cannot shrink pool image {where or '(embedded bytes)'}: {error}") from error
        return {"image": shrunk}


def shrink_pool(images: Dataset, cover: tuple[int, int]) -> Dataset:
    """The ``image`` column of ``images`` (undecoded) shrunk to cover ``cover``, row for row.

    Cached by ``datasets`` when ``images`` is backed by files; shows a progress bar.
    """
    return images.map(
        PoolShrinker(cover),
        batched=True,
        batch_size=64,
        features=Features({"image": DatasetImage(decode=False)}),
        desc=f"NeMo: shrinking pool images to cover a {cover[0]}x{cover[1]} cell",
    )
