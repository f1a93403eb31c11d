"""Opening an image however a dataset row holds it: bytes, a path, PIL, or ``{"bytes", "path"}``.

``datasets.Image(decode=False)`` gives ``{"bytes": ..., "path": ...}``: the bytes when the
image is embedded (a Hub download, a push), else the path of a local file. Opening is
lazy (PIL reads the header only), so callers can still choose how to decode.

>>> import io
>>> from PIL import Image
>>> buffer = io.BytesIO(); Image.new("RGB", (4, 3)).save(buffer, "PNG")
>>> open_image({"bytes": buffer.getvalue(), "path": "a.png"}).size
(4, 3)
>>> open_image({"bytes": None, "path": None})
Traceback (most recent call last):
...
ValueError: image value has neither 'bytes' nor 'path': {'bytes': None, 'path': None}
>>> image_size({"bytes": buffer.getvalue(), "path": None})
(4, 3)
"""

from __future__ import annotations

import io
import os
from collections.abc import Mapping
from typing import Any, TypeAlias

from PIL import Image

__all__ = ["ImageSource", "image_size", "open_image"]

ImageSource: TypeAlias = bytes | str | os.PathLike[str] | Image.Image | Mapping[str, Any]
"""JPEG/PNG bytes, a file path, a PIL image, or a ``datasets`` ``Image(decode=False)``
value (``{"bytes": ..., "path": ...}``; bytes win when both are set)."""


def open_image(source: ImageSource) -> Image.Image:
    """``source`` opened lazily; a PIL image is returned as it is (the same object).

    Raises ``ValueError`` for a value with neither bytes nor path, ``TypeError`` for
    anything that is not an :data:`ImageSource`, and PIL's errors for unreadable data.
    """
    if isinstance(source, Image.Image):
        return source
    resolved: object = source
    if isinstance(source, Mapping):
        data, path = source.get("bytes"), source.get("path")
        if data is None and path is None:
            raise ValueError(f"image value has neither 'bytes' nor 'path': {dict(source)!r}")
        resolved = data if data is not None else path
    if isinstance(resolved, (bytes, bytearray, memoryview)):
        return Image.open(io.BytesIO(resolved))
    if isinstance(resolved, (str, os.PathLike)):
        return Image.open(resolved)
    raise TypeError(
        f"cannot read an image from a {type(resolved).__name__}; pass bytes, a path, a PIL image "
        "or a datasets Image(decode=False) value"
    )


def image_size(source: ImageSource) -> tuple[int, int]:
    """``(width, height)`` of ``source`` as stored, from its header alone.

    A JPEG's size comes from walking its segments
    (:func:`~nemo_hf.data.images.read_jpeg_header`, half the cost of PIL's parse, which
    matters once per drawn sample); anything that walk is not sure of goes to PIL.
    """
    if isinstance(source, Image.Image):
        return source.size
    from nemo_hf.data.images import read_jpeg_header

    resolved = source
    if isinstance(source, Mapping) and source.get("bytes") is not None:
        resolved = source["bytes"]
    if isinstance(resolved, (bytes, bytearray, memoryview)):
        header = read_jpeg_header(bytes(resolved[:_JPEG_HEAD_BYTES]))
    elif isinstance(resolved, (str, os.PathLike)) or isinstance(resolved, Mapping) and resolved.get("path"):
        path = resolved["path"] if isinstance(resolved, Mapping) else resolved
        with open(path, "rb", buffering=0) as file:
            header = read_jpeg_header(file.read(_JPEG_HEAD_BYTES))
    else:
        header = None
    return header[0] if header is not None else open_image(source).size


_JPEG_HEAD_BYTES = 4096  # holds the segments before the scan of most JPEGs; the rest go to PIL
