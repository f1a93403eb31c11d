"""Cheap integrity checks of downloaded COCO images, run once per image before a build.

A full decode of 20k JPEGs would double a build's cost; reading the header (format and
size) and looking for the end-of-image marker catches the common failures — a truncated
download, an HTML error page saved as ``.jpg``, a file from the wrong COCO split — and
names the file. Pixel-level corruption inside an intact file is not detected here.

>>> import tempfile, pathlib
>>> bad = pathlib.Path(tempfile.mkdtemp()) / "COCO_train2014_000000000001.jpg"
>>> _ = bad.write_bytes(b"<html>404</html>")
>>> check_image_file(bad)
Traceback (most recent call last):
...
nemo_hf.data.refer_files.ReferFileError: ...COCO_train2014_000000000001.jpg: not a readable image (...); download it again
"""

from __future__ import annotations

import warnings
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from .refer_files import ReferFileError

_TAIL_BYTES = 4096  # JPEG writers may pad after the EOI marker; look a little further back
_END_MARKERS = {"JPEG": b"\xff\xd9", "PNG": b"IEND"}


def check_image_file(path: Path, expected_size: tuple[int | None, int | None] | None = None) -> None:
    """Raise :class:`ReferFileError` naming ``path`` if it is not a complete image.

    ``expected_size`` is ``(width, height)`` from ``instances.json``; a mismatch means the
    masks would not line up with the pixels.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                image_format, size = image.format, image.size
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise ReferFileError(f"{path}: not a readable image ({err}); download it again") from None
    marker = _END_MARKERS.get(image_format or "")
    if marker is not None:
        with open(path, "rb") as f:
            f.seek(0, 2)
            f.seek(max(0, f.tell() - _TAIL_BYTES))
            if marker not in f.read():
                raise ReferFileError(
                    f"{path}: truncated {image_format} (no end marker); download it again"
                )
    if expected_size and all(expected_size) and tuple(size) != tuple(expected_size):
        raise ReferFileError(
            f"{path}: image is {size[0]}x{size[1]} but instances.json says "
            f"{expected_size[0]}x{expected_size[1]}; is it from another COCO release?"
        )
