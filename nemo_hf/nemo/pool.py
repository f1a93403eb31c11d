"""The pool's images by image_id, as the transform draws them into mosaic cells.

Each distinct image_id of the pool is one candidate negative. With ``cover`` (the largest
cell a layout can give, ``(width, height)``), every image is a copy shrunk once to cover it
(:func:`~nemo_hf.mosaic.thumbnails.shrink_pool`): a cell then decodes from a small file.

>>> from datasets import Dataset, Features, Image, Value
>>> from PIL import Image as PILImage
>>> pool = Dataset.from_dict({"image": [PILImage.new("RGB", (40, 30))] * 3, "image_id": [5, 3, 5]},
...                         features=Features({"image": Image(), "image_id": Value("int64")}))
>>> images = PoolImages(pool)
>>> images.ids.tolist(), 3 in images, sorted(images.source(5))
([3, 5], True, ['bytes', 'path'])
"""

from __future__ import annotations

from typing import Any

import numpy as np
from datasets import Dataset
from datasets import Image as DatasetImage
from PIL import Image

from nemo_hf.data.image_values import ImageSource
from nemo_hf.mosaic.cells import MaskLike
from nemo_hf.mosaic.thumbnails import shrink_pool

__all__ = ["PoolImages"]


class PoolImages:
    """Undecoded pool images by image_id; ``ids`` are the distinct image_ids, ascending."""

    def __init__(self, pool: Dataset, cover: tuple[int, int] | None = None):
        images = pool.select_columns(["image"]).cast_column("image", DatasetImage(decode=False))
        all_ids = np.asarray(pool["image_id"], dtype=np.int64)
        self.ids, first_rows = np.unique(all_ids, return_index=True)
        self.shrunk = cover is not None
        if cover is None:
            self._images, rows = images, first_rows
        else:
            self._images, rows = shrink_pool(images.select(first_rows), cover), np.arange(len(first_rows))
        self._row = dict(zip(self.ids.tolist(), rows.tolist()))

    def __contains__(self, image_id: int) -> bool:
        return image_id in self._row

    def source(self, image_id: int) -> dict[str, Any]:
        """The image value (``{"bytes", "path"}``) of ``image_id``."""
        return self._images[self._row[image_id]]["image"]

    def query(self, image_id: int, image: ImageSource, mask: MaskLike) -> tuple[ImageSource, tuple[int, int] | None]:
        """The query image to draw and the size its mask belongs to (``None``: the image's own).

        The pool's shrunk copy when there is one, laid out as the original the mask fits.
        """
        if not (self.shrunk and image_id in self):
            return image, None
        if isinstance(mask, Image.Image):
            return self.source(image_id), mask.size
        height, width = np.shape(mask)[:2]
        return self.source(image_id), (int(width), int(height))
