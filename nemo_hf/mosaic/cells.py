"""Decode an image straight into a mosaic cell, and carry its mask with the same geometry.

Two resize modes:

- ``"stretch"`` fills the cell and ignores the aspect ratio, as the paper does;
- ``"letterbox"`` keeps the aspect ratio, centres the image and pads the rest of the cell
  with ``fill`` (by default CLIP's pixel mean, so padding normalises to zero, as the
  authors' code pads its network input).

Both the image and the mask go through :func:`cell_geometry`, so a letterboxed mask sits
exactly where its image does. Masks are resized with nearest-neighbour sampling and come
back as ``bool`` arrays (a nonzero input pixel is foreground).

JPEGs are decoded with libjpeg's DCT scaling (``Image.draft``): an image needed at 240 px
is decoded at the smallest of 1/1, 1/2, 1/4, 1/8 scale that is still at least as large as
what the cell shows, then resized. That is never smaller than the target, so quality is
kept, and it saves the inverse DCT, upsampling and colour conversion of the skipped pixels
(not the entropy decoding, which is most of the cost for photos: see BENCHMARKS.md).
Images are decoded in their stored orientation (EXIF orientation is not applied), the
orientation COCO's annotations use; ``datasets``' own decoding does apply it.

Example:
    >>> import io
    >>> from PIL import Image
    >>> buf = io.BytesIO(); Image.new("RGB", (640, 480), "teal").save(buf, "JPEG")
    >>> decode_to_cell(buf.getvalue(), (240, 240)).size
    (240, 240)
    >>> import numpy as np
    >>> mask_to_cell(np.ones((480, 640), bool), (240, 240), "letterbox").sum(axis=0)[0]
    np.int64(180)
"""

from __future__ import annotations

from typing import Any, Literal, NamedTuple, TypeAlias, get_args

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageFilter

from nemo_hf.data.image_values import ImageSource, image_size, open_image

Resize: TypeAlias = Literal["stretch", "letterbox"]
MaskLike: TypeAlias = npt.NDArray[Any] | Image.Image
"""A 2-D numeric/bool array (nonzero = foreground) or a PIL image of mode ``L`` or ``1``."""

CLIP_MEAN_FILL = (123, 117, 104)
"""CLIP's per-channel pixel mean in 0–255: letterbox padding that normalises to zero."""

IMAGE_RESAMPLE = Image.Resampling.BILINEAR
"""PIL's bilinear filter widens with the scale factor, so shrinking does not alias."""


class CellGeometry(NamedTuple):
    """Where a source lands in a cell: resized to ``content_size``, pasted at ``offset``."""

    content_size: tuple[int, int]
    offset: tuple[int, int]


def cell_geometry(src_size: tuple[int, int], cell_size: tuple[int, int], resize: Resize) -> CellGeometry:
    """Geometry of an image of ``src_size`` placed in a cell of ``cell_size`` (both ``(w, h)``).

    Example:
        >>> cell_geometry((640, 480), (240, 240), "stretch")
        CellGeometry(content_size=(240, 240), offset=(0, 0))
        >>> cell_geometry((640, 480), (240, 240), "letterbox")
        CellGeometry(content_size=(240, 180), offset=(0, 30))
    """
    if resize not in get_args(Resize):
        raise ValueError(f"resize must be one of {get_args(Resize)}, got {resize!r}")
    (sw, sh), (cw, ch) = src_size, cell_size
    if min(sw, sh, cw, ch) < 1:
        raise ValueError(f"image size {src_size!r} and cell size {cell_size!r} must be at least 1×1")
    if resize == "stretch":
        return CellGeometry((cw, ch), (0, 0))
    # The limiting axis fills the cell exactly; only the other one is rounded.
    if cw * sh <= ch * sw:
        w, h = cw, min(ch, max(1, round(sh * cw / sw)))
    else:
        w, h = min(cw, max(1, round(sw * ch / sh))), ch
    return CellGeometry((w, h), ((cw - w) // 2, (ch - h) // 2))


class CellSource:
    """An image opened lazily to be drawn into cells, and the decoding that drawing uses.

    Only an image opened here may be decoded at a reduced JPEG scale (``draft`` changes the
    image object): a PIL image the caller already holds is read as it is, never mutated.

    Example:
        >>> from PIL import Image
        >>> held = Image.new("L", (64, 48))
        >>> source = CellSource(held)
        >>> source.size, source.draftable, source.decode((32, 24))[0].mode
        ((64, 48), False, 'RGB')
    """

    def __init__(self, source: ImageSource) -> None:
        self.image = open_image(source)
        self.draftable = self.image is not source

    @property
    def size(self) -> tuple[int, int]:
        """``(width, height)`` of the stored image, known before any decoding."""
        return self.image.size

    def decode(self, min_size: tuple[int, int]) -> tuple[Image.Image, tuple[float, float, float, float] | None]:
        """RGB pixels at the smallest JPEG DCT scale still ``>= min_size``; see :func:`draft_decode`."""
        box = None
        if self.draftable:
            drafted = self.image.draft("RGB", min_size)
            box = drafted[1] if drafted is not None else None
        # convert() would copy an image that is already RGB; the caller only reads it.
        if self.image.mode == "RGB":
            self.image.load()
            return self.image, box
        return self.image.convert("RGB"), box

    def content(
        self,
        cell_size: tuple[int, int],
        resize: Resize,
        blur_radius: float = 0.0,
        geometry_size: tuple[int, int] | None = None,
    ) -> tuple[Image.Image, tuple[int, int]]:
        """The resized (and maybe blurred) image and its offset in the cell; padding not drawn.

        ``geometry_size`` places the content as if the image had that size: for a resized copy
        standing in for the original, so it lands exactly where the original's mask does.
        """
        geometry = cell_geometry(geometry_size or self.size, cell_size, resize)
        decoded, box = self.decode(geometry.content_size)
        content = decoded.resize(geometry.content_size, IMAGE_RESAMPLE, box=box)
        if blur_radius > 0:
            content = content.filter(ImageFilter.GaussianBlur(blur_radius))
        return content, geometry.offset


def draft_decode(
    source: ImageSource, min_size: tuple[int, int]
) -> tuple[Image.Image, tuple[float, float, float, float] | None]:
    """Decode ``source`` as RGB at the smallest JPEG DCT scale that is still ``>= min_size``.

    Returns the decoded image and the box of the original image it covers, in the decoded
    image's pixels, to hand to ``Image.resize(box=...)`` so the sub-pixel alignment of the
    scaled decode is undone (``None`` when no scaling happened). Non-JPEG sources, and PIL
    images the caller already holds (they are never mutated), decode at full size.

    Example:
        >>> import io
        >>> from PIL import Image
        >>> buf = io.BytesIO(); Image.new("RGB", (640, 480)).save(buf, "JPEG")
        >>> image, box = draft_decode(buf.getvalue(), (240, 240))
        >>> image.size, box
        ((320, 240), (0, 0, 320.0, 240.0))
    """
    return CellSource(source).decode(min_size)


def decode_to_cell(
    source: ImageSource,
    cell_size: tuple[int, int],
    resize: Resize = "stretch",
    *,
    fill: tuple[int, int, int] = CLIP_MEAN_FILL,
    blur_radius: float = 0.0,
) -> Image.Image:
    """Decode ``source`` into an RGB image of exactly ``cell_size`` (``(w, h)``).

    Args:
        source: see :data:`ImageSource`.
        cell_size: the cell's ``(width, height)``.
        resize: ``"stretch"`` or ``"letterbox"`` (module docstring).
        fill: RGB colour of the letterbox padding.
        blur_radius: Gaussian blur radius in cell pixels applied to the image (not the
            padding); 0 disables it. Used for the blurred-negatives ablation.

    Example:
        >>> from PIL import Image
        >>> cell = decode_to_cell(Image.new("RGB", (50, 100), "white"), (40, 40), "letterbox")
        >>> cell.getpixel((0, 20)), cell.getpixel((20, 20))
        ((123, 117, 104), (255, 255, 255))
    """
    content, offset = CellSource(source).content(cell_size, resize, blur_radius)
    if content.size == tuple(cell_size):
        return content
    cell = Image.new("RGB", cell_size, fill)
    cell.paste(content, offset)
    return cell


def _mask_image(mask: MaskLike) -> Image.Image:
    """``mask`` as a PIL image whose nonzero pixels are foreground, without a full-size copy
    where avoidable (masks are binarised after the resize, on the small cell)."""
    if isinstance(mask, Image.Image):
        if mask.mode not in ("L", "1"):
            raise ValueError(f"mask image must have mode 'L' or '1', got mode {mask.mode!r}")
        return mask
    array = np.asarray(mask)
    if array.ndim != 2:
        raise ValueError(f"mask must be 2-D (height, width), got shape {array.shape}")
    if array.dtype == np.bool_:
        array = array.view(np.uint8)
    elif array.dtype != np.uint8:
        array = (array != 0).view(np.uint8)
    return Image.fromarray(np.ascontiguousarray(array))  # 2-D uint8 → mode L


def check_mask_fits(mask: MaskLike, image: ImageSource, row: str) -> None:
    """``ValueError`` naming ``row`` unless ``mask`` has the size of ``image`` as stored.

    Only the image's header is read. Drawing checks this itself when it draws the image it
    is given; a caller that draws a stand-in for the image (a shrunk pool copy, laid out with
    ``target_size``) checks the row here, or a mask of the wrong size is stretched into the
    cell without a word.

    Example:
        >>> import numpy as np
        >>> from PIL import Image
        >>> check_mask_fits(np.ones((30, 40), bool), Image.new("RGB", (40, 30)), "ref 7")
        >>> check_mask_fits(np.ones((40, 30), bool), Image.new("RGB", (40, 30)), "ref 7 (sent_id 3)")
        Traceback (most recent call last):
        ...
        ValueError: ref 7 (sent_id 3): its mask is 30x40 but its image is 40x30 (width x height); a mask must cover its image pixel for pixel: rebuild the row's mask at its image's size
    """
    mask_size = mask.size if isinstance(mask, Image.Image) else tuple(np.shape(mask)[1::-1])
    size = image_size(image)
    if tuple(mask_size) != tuple(size):
        raise ValueError(
            f"{row}: its mask is {mask_size[0]}x{mask_size[1]} but its image is {size[0]}x{size[1]} (width x "
            "height); a mask must cover its image pixel for pixel: rebuild the row's mask at its image's size"
        )


def mask_to_cell(
    mask: MaskLike,
    cell_size: tuple[int, int],
    resize: Resize = "stretch",
    src_size: tuple[int, int] | None = None,
) -> npt.NDArray[np.bool_]:
    """Resize ``mask`` into a cell with the same geometry as :func:`decode_to_cell`.

    Args:
        mask: see :data:`MaskLike`.
        cell_size: the cell's ``(width, height)``.
        resize: ``"stretch"`` or ``"letterbox"``; must be the image's.
        src_size: ``(width, height)`` of the image the mask belongs to; checked against the
            mask's own size when given.

    Returns:
        A ``bool`` array of shape ``(height, width)`` of the cell; padding is ``False``.

    Example:
        >>> import numpy as np
        >>> m = np.zeros((4, 8), bool); m[:, :4] = True
        >>> mask_to_cell(m, (4, 4), "letterbox").astype(int)
        array([[0, 0, 0, 0],
               [1, 1, 0, 0],
               [1, 1, 0, 0],
               [0, 0, 0, 0]])
    """
    image = _mask_image(mask)
    own_size = image.size
    if src_size is not None and tuple(src_size) != own_size:
        raise ValueError(f"mask size {own_size} (w, h) does not match its image size {tuple(src_size)}")
    geometry = cell_geometry(own_size, cell_size, resize)
    content = np.asarray(image.resize(geometry.content_size, Image.Resampling.NEAREST))
    cell = np.zeros((cell_size[1], cell_size[0]), dtype=bool)
    (x, y), (w, h) = geometry.offset, geometry.content_size
    cell[y : y + h, x : x + w] = content != 0
    return cell
