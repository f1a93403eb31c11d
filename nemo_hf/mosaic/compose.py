"""Assemble a NeMo mosaic (or the single-image case) and its target mask.

Mask rules: the target's mask is resized into the target cell with the same geometry as
its image; every other cell is background (``False``), whatever objects its negative image
holds; the target image is drawn once, in its own cell, and never copied into another.
Negatives fill the remaining cells in row-major order, in the order given. Which cell,
which negatives and which layout are the caller's choices (the ``NeMo`` transform draws
them from its seeded generator); these functions draw nothing.

Example:
    >>> import numpy as np
    >>> from PIL import Image
    >>> from nemo_hf.mosaic.layout import grid_layout
    >>> target, mask = Image.new("RGB", (64, 48), "red"), np.ones((48, 64), bool)
    >>> negatives = [Image.new("RGB", (64, 48), c) for c in ("green", "blue", "gray")]
    >>> mosaic, out = compose_mosaic(target, mask, negatives, grid_layout(2, 32), target_cell=3)
    >>> mosaic.size, out.shape, int(out.sum()), out[16:, 16:].all()
    ((32, 32), (32, 32), 256, np.True_)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
from PIL import Image

from nemo_hf.mosaic.cells import CLIP_MEAN_FILL, CellSource, ImageSource, MaskLike, Resize, mask_to_cell
from nemo_hf.mosaic.layout import Box

BLUR_RADIUS = 100.0
"""Gaussian radius (cell pixels) for blurred negatives: the authors' released code applies
``ImageFilter.GaussianBlur(100)`` to each negative cell, which leaves little more than its
colours."""


def _checked_boxes(boxes: Sequence[tuple[int, int, int, int]]) -> list[Box]:
    checked = [Box(*(int(v) for v in box)) for box in boxes]
    if not checked:
        raise ValueError("a mosaic needs at least one cell box")
    for index, box in enumerate(checked):
        if box.left < 0 or box.top < 0 or box.width < 1 or box.height < 1:
            raise ValueError(f"cell box {index} {tuple(box)!r} must have non-negative corners and positive size")
    return checked


def compose_mosaic(
    target_image: ImageSource,
    target_mask: MaskLike,
    negatives: Sequence[ImageSource],
    boxes: Sequence[tuple[int, int, int, int]],
    target_cell: int,
    *,
    resize: Resize = "stretch",
    blur_negatives: bool = False,
    blur_radius: float = BLUR_RADIUS,
    fill: tuple[int, int, int] = CLIP_MEAN_FILL,
    target_size: tuple[int, int] | None = None,
) -> tuple[Image.Image, npt.NDArray[np.bool_]]:
    """Tile the target and its negatives into one RGB canvas and place the target's mask.

    Args:
        target_image: the referred image (any :data:`~nemo_hf.mosaic.cells.ImageSource`).
        target_mask: its mask, same size as the image (:data:`~nemo_hf.mosaic.cells.MaskLike`).
        negatives: ``len(boxes) - 1`` images for the other cells, used in row-major cell order.
        boxes: the cells, e.g. from :func:`~nemo_hf.mosaic.layout.grid_layout`; the canvas
            spans their bounding box from the origin.
        target_cell: index into ``boxes`` of the target's cell.
        resize: ``"stretch"`` (the paper) or ``"letterbox"``, for every cell.
        blur_negatives: blur the negative cells (an ablation of the paper); the target
            cell is never blurred.
        blur_radius: Gaussian radius in cell pixels when ``blur_negatives`` is set.
        fill: RGB colour of letterbox padding.
        target_size: ``(width, height)`` of the image the mask belongs to, when
            ``target_image`` is a resized copy of it (e.g. a shrunk pool copy); the cell is
            then laid out for that size, so image and mask stay aligned. By default the
            target image's own size, which must equal the mask's.

    Returns:
        ``(mosaic, mask)``: the RGB canvas and a ``bool`` array of shape ``(height, width)``
        that is ``True`` only on the target's foreground inside ``boxes[target_cell]``.

    Raises:
        ValueError: if the number of negatives is not ``len(boxes) - 1``, ``target_cell``
            is out of range, a box is empty, or the mask's size differs from the image's.

    Example:
        >>> import numpy as np
        >>> from PIL import Image
        >>> boxes = [(0, 0, 10, 20), (10, 0, 20, 20)]
        >>> image, mask = compose_mosaic(Image.new("RGB", (5, 5)), np.ones((5, 5)), [Image.new("RGB", (5, 5))], boxes, 1)
        >>> image.size, mask[:, :10].any(), mask[:, 10:].all()
        ((20, 20), np.False_, np.True_)
    """
    cells = _checked_boxes(boxes)
    if len(negatives) != len(cells) - 1:
        raise ValueError(
            f"a mosaic of {len(cells)} cells needs {len(cells) - 1} negatives (one per non-target cell), "
            f"got {len(negatives)}"
        )
    if not 0 <= target_cell < len(cells):
        raise ValueError(f"target_cell {target_cell!r} is out of range for {len(cells)} cells")
    target = CellSource(target_image)
    target_box = cells[target_cell]
    # Checked before any decoding: a mask that does not match its image must fail fast.
    cell_mask = mask_to_cell(target_mask, target_box.size, resize, src_size=target_size or target.size)

    width, height = max(b.right for b in cells), max(b.bottom for b in cells)
    canvas = Image.new("RGB", (width, height), fill)
    mask = np.zeros((height, width), dtype=bool)
    mask[target_box.top : target_box.bottom, target_box.left : target_box.right] = cell_mask

    radius = blur_radius if blur_negatives else 0.0
    negative_sources = iter(negatives)
    for index, box in enumerate(cells):
        if index == target_cell:
            content, (x, y) = target.content(box.size, resize, geometry_size=target_size)
        else:
            content, (x, y) = CellSource(next(negative_sources)).content(box.size, resize, radius)
        # Pasted straight into the canvas, which already holds the letterbox fill.
        canvas.paste(content, (box.left + x, box.top + y))
    return canvas, mask


def single_image(
    target_image: ImageSource,
    target_mask: MaskLike,
    size: int,
    resize: Resize = "stretch",
    *,
    fill: tuple[int, int, int] = CLIP_MEAN_FILL,
) -> tuple[Image.Image, npt.NDArray[np.bool_]]:
    """The no-mosaic sample: the target alone on a ``size × size`` canvas, like a mosaic's.

    It is a one-cell mosaic, so image and mask go through exactly the code a mosaic cell does.

    Example:
        >>> import numpy as np
        >>> from PIL import Image
        >>> image, mask = single_image(Image.new("RGB", (640, 480)), np.ones((480, 640), bool), 480)
        >>> image.size, mask.shape, bool(mask.all())
        ((480, 480), (480, 480), True)
    """
    return compose_mosaic(target_image, target_mask, [], [Box(0, 0, size, size)], 0, resize=resize, fill=fill)
