"""Cheap integrity checks of downloaded COCO images, run once per image before a build.

A full decode of 20k JPEGs would double a build's cost; reading the header (format and
size) and looking for the end-of-image marker catches the common failures — a truncated
download, an HTML error page saved as ``.jpg``, a file from the wrong COCO split — and
names the file. Pixel-level corruption inside an intact file is not detected here.

COCO's annotations are drawn on the pixels *as stored*, but ``datasets.Image`` applies a
JPEG's EXIF orientation tag when it decodes, which would turn such an image against its
mask. :func:`check_image_file` reports the tag, and :func:`without_exif` gives the file's
bytes with the EXIF segment removed (the pixels are untouched), for the builder to embed.

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

from PIL import ExifTags, Image, UnidentifiedImageError

from .refer_files import ReferFileError

_TAIL_BYTES = 4096  # JPEG writers may pad after the EOI marker; look a little further back
_END_MARKERS = {"JPEG": b"\xff\xd9", "PNG": b"IEND"}


def check_image_file(path: Path, expected_size: tuple[int | None, int | None] | None = None) -> bool:
    """Raise :class:`ReferFileError` naming ``path`` if it is not a complete image.

    ``expected_size`` is ``(width, height)`` from ``instances.json``; a mismatch means the
    masks would not line up with the pixels. Returns whether the file carries an EXIF
    orientation other than "normal" (see :func:`without_exif`).
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                image_format, size = image.format, image.size
                orientation = image.getexif().get(ExifTags.Base.Orientation, 1)
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
    return orientation not in (1, None)


def without_exif(path: Path) -> bytes:
    """The JPEG's bytes with its APP1 (EXIF) segments removed; other files unchanged.

    >>> import io, tempfile, pathlib
    >>> exif = Image.Exif(); exif[ExifTags.Base.Orientation] = 6
    >>> buffer = io.BytesIO(); Image.new("RGB", (4, 2)).save(buffer, "JPEG", exif=exif)
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "rotated.jpg"; _ = path.write_bytes(buffer.getvalue())
    >>> check_image_file(path), Image.open(io.BytesIO(without_exif(path))).getexif().get(274)
    (True, None)
    """
    data = Path(path).read_bytes()
    if not data.startswith(b"\xff\xd8"):
        return data
    kept, position = [data[:2]], 2
    while position + 4 <= len(data) and data[position] == 0xFF:
        marker = data[position + 1]
        if marker == 0xDA:  # start of scan: entropy-coded data follows, no more headers
            break
        length = int.from_bytes(data[position + 2 : position + 4], "big")
        segment = data[position : position + 2 + length]
        if not (marker == 0xE1 and segment[4:10] == b"Exif\x00\x00"):
            kept.append(segment)
        position += 2 + length
    kept.append(data[position:])
    return b"".join(kept)
