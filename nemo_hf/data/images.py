"""Cheap integrity checks of downloaded COCO images, run once per image before a build.

A full decode of 20k JPEGs would double a build's cost; reading the header (format and
size) and looking for the end-of-image marker catches the common failures — a truncated
download, an HTML error page saved as ``.jpg``, a file from the wrong COCO split — and
names the file. Pixel-level corruption inside an intact file is not detected here.

Opening each file with PIL just to read its header costs three times walking the JPEG's
segments directly (:func:`read_jpeg_header`), so that is done first. The walk only
*accepts*: whatever it is not sure PIL would read the same way — an unusual segment, a
damaged or truncated header, an odd EXIF block — goes to PIL, so the checks reject
exactly what PIL rejects, with PIL's message.

COCO's annotations are drawn on the pixels *as stored*, but ``datasets.Image`` applies an
EXIF orientation tag (or an XMP one) when it decodes, in whatever format the image is,
which would turn such an image against its mask. :func:`check_image_file` reports the tag,
and :func:`without_exif` gives bytes of the same pixels that carry none, for the builder to
embed: a JPEG's own bytes less its EXIF and XMP segments, any other image re-encoded as PNG.

>>> import tempfile, pathlib
>>> bad = pathlib.Path(tempfile.mkdtemp()) / "COCO_train2014_000000000001.jpg"
>>> _ = bad.write_bytes(b"<html>404</html>")
>>> check_image_file(bad)
Traceback (most recent call last):
...
nemo_hf.data.refer_files.ReferFileError: ...COCO_train2014_000000000001.jpg: not a readable image (...); download it again
"""

from __future__ import annotations

import io
import struct
import warnings
from pathlib import Path

from PIL import ExifTags, Image, UnidentifiedImageError

from nemo_hf.data.refer_files import ReferFileError

_TAIL_BYTES = 4096  # JPEG writers may pad after the EOI marker; look a little further back
_FIRST_READ = 4096  # holds the segments before the scan of most JPEGs; reading more costs
_HEAD_BYTES = 65536  # ...and this those with an EXIF thumbnail or an ICC profile
_END_MARKERS = {"JPEG": b"\xff\xd9", "PNG": b"IEND"}
_XMP_SIGNATURE = b"http://ns.adobe.com/xap/1.0/\x00"  # APP1 XMP packets start so

_SOS, _DQT, _COM = 0xDA, 0xDB, 0xFE
_APP0, _APP1, _APP2, _APP13, _APP14, _APP15 = 0xE0, 0xE1, 0xE2, 0xED, 0xEE, 0xEF
_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
_SKIPPED = {0xC4, 0xCC, 0xDC, 0xDD, 0xDF}  # DHT, DAC, DNL, DRI, EXP: PIL reads past them
_ORIENTATION, _X_RESOLUTION = 0x0112, 0x011A
_SHORT, _RATIONAL = 3, 5


def read_jpeg_header(head: bytes) -> tuple[tuple[int, int], int] | None:
    """``((width, height), exif_orientation)`` from the first bytes of a JPEG, or ``None``.

    ``None`` means "ask PIL": not a JPEG, a damaged or truncated header, or any segment
    whose reading by PIL this function does not reproduce (MPO, Photoshop or XMP blocks,
    fill bytes, a second EXIF block, ...). ``head`` must reach past the start-of-scan
    segment. Orientation 1 (the default) when there is no EXIF tag.

    >>> import io
    >>> buffer = io.BytesIO(); Image.new("L", (5, 3)).save(buffer, "JPEG")
    >>> read_jpeg_header(buffer.getvalue())
    ((5, 3), 1)
    >>> read_jpeg_header(b"GIF89a...") is None
    True
    """
    if not head.startswith(b"\xff\xd8\xff"):
        return None
    size, orientation, position = None, None, 2
    while position + 4 <= len(head) and head[position] == 0xFF:
        marker = head[position + 1]
        end = position + 2 + int.from_bytes(head[position + 2 : position + 4], "big")
        if end > len(head):
            return None
        segment = head[position + 4 : end]
        if marker == _SOS:
            if size is None or size[0] == 0 or size[1] == 0 or _too_large_for_pil(size):
                return None
            return size, 1 if orientation is None else orientation
        if marker in _SOF:
            size = _frame_size(segment)
            if size is None:
                return None
        elif marker == _APP1 and segment.startswith(b"Exif\x00\x00"):
            if orientation is not None:  # PIL would join the EXIF blocks
                return None
            orientation = _exif_orientation(segment[6:])
            if orientation is None:
                return None
        elif _APP0 <= marker <= _APP15:
            if not _plain_app_segment(marker, segment):
                return None
        elif marker == _DQT:
            if not _quantization_tables_complete(segment):
                return None
        elif marker not in _SKIPPED and marker != _COM:
            return None
        position = end
    return None


def _frame_size(segment: bytes) -> tuple[int, int] | None:
    """``(width, height)`` of a start-of-frame segment PIL opens: 8-bit, 1/3/4 components."""
    if len(segment) < 6 or (len(segment) - 6) % 3 or segment[0] != 8 or segment[5] not in (1, 3, 4):
        return None
    height, width = struct.unpack_from(">HH", segment, 1)
    return width, height


def _too_large_for_pil(size: tuple[int, int]) -> bool:
    # PIL warns about or refuses such sizes (decompression bombs); let it decide
    return Image.MAX_IMAGE_PIXELS is not None and size[0] * size[1] > Image.MAX_IMAGE_PIXELS


def _plain_app_segment(marker: int, segment: bytes) -> bool:
    """Whether PIL merely stores this application segment, i.e. cannot fail on it or read
    an orientation from it."""
    if marker == _APP0 and segment.startswith(b"JFIF"):
        return len(segment) >= 7  # PIL reads the version at bytes 5-6
    if marker == _APP1:
        return not segment.startswith(_XMP_SIGNATURE)  # XMP: may hold an orientation
    if marker == _APP2:
        if segment.startswith(b"ICC_PROFILE\x00"):
            return len(segment) >= 14  # PIL reads the chunk count at byte 13
        return not segment.startswith(b"MPF\x00")  # multi-picture files open as MPO
    if marker == _APP13:
        return not segment.startswith(b"Photoshop 3.0\x00")
    if marker == _APP14 and segment.startswith(b"Adobe"):
        return len(segment) >= 7
    return True


def _quantization_tables_complete(segment: bytes) -> bool:
    """PIL refuses a DQT segment whose last table is cut short."""
    position = 0
    while position < len(segment):
        position += 65 if segment[position] < 16 else 129  # 8-bit or 16-bit entries, plus one byte
        if position > len(segment):
            return False
    return True


def _exif_orientation(tiff: bytes) -> int | None:
    """The orientation tag of an EXIF block's first IFD (1 when absent), or ``None`` when the
    block is anything but well-formed classic TIFF with a single SHORT orientation."""
    order = {b"II*\x00": "<", b"MM\x00*": ">"}.get(tiff[:4])
    if order is None or len(tiff) < 8:
        return None
    (ifd,) = struct.unpack_from(order + "I", tiff, 4)
    if ifd + 2 > len(tiff):
        return None
    (count,) = struct.unpack_from(order + "H", tiff, ifd)
    entries_end = ifd + 2 + 12 * count
    if entries_end + 4 > len(tiff):
        return None
    found = []
    for tag, kind, n, value in struct.iter_unpack(order + "HHI4s", tiff[ifd + 2 : entries_end]):
        if tag == _ORIENTATION:
            found.append((kind, n, value))
        elif tag == _X_RESOLUTION and (kind, n) != (_RATIONAL, 1):
            return None  # PIL's DPI reading fails on some other types and refuses the file
    if not found:
        return 1
    if len(found) > 1 or found[0][:2] != (_SHORT, 1):
        return None
    return struct.unpack_from(order + "H", found[0][2])[0]


def _read_header_and_tail(path: Path) -> tuple[tuple[tuple[int, int], int] | None, bytes]:
    """:func:`read_jpeg_header` of the file's first bytes, and its last :data:`_TAIL_BYTES`."""
    with open(path, "rb", buffering=0) as f:
        head = f.read(_FIRST_READ)
        header = read_jpeg_header(head)
        if header is None and len(head) == _FIRST_READ and head.startswith(b"\xff\xd8\xff"):
            header = read_jpeg_header(head + f.read(_HEAD_BYTES - _FIRST_READ))
        f.seek(0, 2)
        f.seek(max(0, f.tell() - _TAIL_BYTES))
        return header, f.read()


def _pil_header(path: Path) -> tuple[str | None, tuple[int, int], int | None]:
    """Format, size and EXIF orientation as PIL reads them; ``ReferFileError`` if it cannot."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                return image.format, image.size, image.getexif().get(ExifTags.Base.Orientation, 1)
    except Image.DecompressionBombError as err:  # its own class, not an OSError
        raise ReferFileError(
            f"{path}: too large to open ({err}); if the image is genuine, raise PIL.Image.MAX_IMAGE_PIXELS "
            "before the build, else download it again"
        ) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise ReferFileError(f"{path}: not a readable image ({err}); download it again") from None


def check_image_file(path: Path, expected_size: tuple[int | None, int | None] | None = None) -> bool:
    """Raise :class:`ReferFileError` naming ``path`` if it is not a complete image.

    ``expected_size`` is ``(width, height)`` from ``instances.json``; a mismatch means the
    masks would not line up with the pixels. Returns whether the file carries an EXIF
    orientation other than "normal" (see :func:`without_exif`).
    """
    try:
        jpeg, tail = _read_header_and_tail(path)
    except OSError as err:
        raise ReferFileError(f"{path}: not a readable image ({err}); download it again") from None
    image_format: str | None
    orientation: int | None
    if jpeg is not None:
        image_format, (size, orientation) = "JPEG", jpeg
    else:
        image_format, size, orientation = _pil_header(path)
    marker = _END_MARKERS.get(image_format or "")
    if marker is not None and marker not in tail:
        raise ReferFileError(f"{path}: truncated {image_format} (no end marker); download it again")
    if expected_size and all(expected_size) and tuple(size) != tuple(expected_size):
        raise ReferFileError(
            f"{path}: image is {size[0]}x{size[1]} but instances.json says "
            f"{expected_size[0]}x{expected_size[1]}; is it from another COCO release?"
        )
    return orientation not in (1, None)


def without_exif(path: Path) -> bytes:
    """The image's stored pixels, as bytes that carry no orientation for a decoder to apply.

    A JPEG keeps its bytes less its APP1 segments (EXIF and XMP), so its pixels are untouched.
    Any other format (PNG, WebP, ... also hold EXIF and XMP, in chunks of their own), or a
    JPEG that still carries an orientation after that, is decoded without applying it and
    written again as PNG: lossless, so the pixels are the ones the file decodes to.
    ``datasets`` decodes either as it is, and COCO's masks follow the stored pixels.

    >>> import io, tempfile, pathlib
    >>> exif = Image.Exif(); exif[ExifTags.Base.Orientation] = 6
    >>> buffer = io.BytesIO(); Image.new("RGB", (4, 2)).save(buffer, "JPEG", exif=exif)
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "rotated.jpg"; _ = path.write_bytes(buffer.getvalue())
    >>> check_image_file(path), Image.open(io.BytesIO(without_exif(path))).getexif().get(274)
    (True, None)
    >>> _ = Image.new("RGB", (4, 2)).save(path.with_suffix(".webp"), "WEBP", exif=exif)
    >>> plain = Image.open(io.BytesIO(without_exif(path.with_suffix(".webp"))))
    >>> plain.format, plain.size, plain.getexif().get(274)
    ('PNG', (4, 2), None)
    """
    data = Path(path).read_bytes()
    if data.startswith(b"\xff\xd8"):
        stripped = _jpeg_without_app1(data)
        if _orientation_of(stripped) in (None, 1):
            return stripped
    return _plain_png(data)


def _jpeg_without_app1(data: bytes) -> bytes:
    """A JPEG's bytes less its APP1 segments that hold EXIF or XMP (both may carry an orientation)."""
    kept, position = [data[:2]], 2
    while position + 4 <= len(data) and data[position] == 0xFF:
        marker = data[position + 1]
        if marker == 0xDA:  # start of scan: entropy-coded data follows, no more headers
            break
        length = int.from_bytes(data[position + 2 : position + 4], "big")
        segment = data[position : position + 2 + length]
        if not (marker == 0xE1 and segment[4:].startswith((b"Exif\x00\x00", _XMP_SIGNATURE))):
            kept.append(segment)
        position += 2 + length
    kept.append(data[position:])
    return b"".join(kept)


def _orientation_of(data: bytes) -> int | None:
    """The orientation PIL (and so ``datasets``) would apply to an image's bytes, if any."""
    with Image.open(io.BytesIO(data)) as image:
        return image.getexif().get(ExifTags.Base.Orientation)


# Modes a PNG stores as they are; anything else (CMYK, YCbCr, ...) is written as RGB.
_PNG_MODES = {"1", "L", "LA", "I", "I;16", "P", "RGB", "RGBA"}


def _plain_png(data: bytes) -> bytes:
    """The pixels ``data`` decodes to (first frame, orientation not applied), as a PNG that
    keeps only the colour profile and transparency of the file's metadata."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # check_image_file has decided
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            plain = image.copy() if image.mode in _PNG_MODES else image.convert("RGB")
    # the PNG writer takes some metadata from ``info``: keep only what changes how pixels look
    plain.info = {key: image.info[key] for key in ("icc_profile", "transparency") if key in image.info}
    buffer = io.BytesIO()
    plain.save(buffer, "PNG")
    return buffer.getvalue()
