"""NeMo's mosaic drawing as pure functions: layout, placement, cell resize, assembly.

Every input is explicit, random choices included (cross point, target cell, negatives);
the ``NeMo`` transform draws those from its seeded generator and calls these functions.

Example:
    >>> import numpy as np
    >>> from PIL import Image
    >>> from nemo_hf.mosaic import allowed_cells, compose_mosaic, grid_layout
    >>> cells = allowed_cells("the dog on the right", 2)
    >>> cells
    [1, 3]
    >>> target, mask = Image.new("RGB", (640, 480), "red"), np.ones((480, 640), bool)
    >>> negatives = [Image.new("RGB", (640, 480), c) for c in ("green", "blue", "gray")]
    >>> mosaic, out = compose_mosaic(target, mask, negatives, grid_layout(2, 480), cells[0])
    >>> mosaic.getpixel((400, 100)), bool(out[:240, 240:].all()), int(out.sum()) == 240 * 240
    ((255, 0, 0), True, True)
"""

from nemo_hf.mosaic.cells import (
    CLIP_MEAN_FILL,
    CellGeometry,
    CellSource,
    ImageSource,
    MaskLike,
    Resize,
    cell_geometry,
    check_mask_fits,
    decode_to_cell,
    draft_decode,
    mask_to_cell,
)
from nemo_hf.mosaic.compose import BLUR_RADIUS, compose_mosaic, single_image
from nemo_hf.mosaic.layout import SUPPORTED_GRIDS, Box, check_grid, grid_layout, sample_cross_point
from nemo_hf.mosaic.position import POSITION_WORDS, allowed_cells

__all__ = [
    "BLUR_RADIUS",
    "CLIP_MEAN_FILL",
    "POSITION_WORDS",
    "SUPPORTED_GRIDS",
    "Box",
    "CellGeometry",
    "CellSource",
    "ImageSource",
    "MaskLike",
    "Resize",
    "allowed_cells",
    "cell_geometry",
    "check_grid",
    "check_mask_fits",
    "compose_mosaic",
    "decode_to_cell",
    "draft_decode",
    "grid_layout",
    "mask_to_cell",
    "sample_cross_point",
    "single_image",
]
