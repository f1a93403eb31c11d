"""The image checks: the JPEG segment walk reads what PIL reads, and ``check_image_file``
rejects exactly the files a PIL-only check rejects, however the file is damaged."""

from __future__ import annotations

import io
import struct
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import ExifTags, Image

from nemo_hf.data import images
from nemo_hf.data.images import check_image_file, read_jpeg_header
from nemo_hf.data.refer_files import ReferFileError

ORIENTATION, X_RESOLUTION, RESOLUTION_UNIT, MAKE = 0x0112, 0x011A, 0x0128, 0x010F


def _tiff(order: str, entries: list[tuple[int, int, int, bytes]], padding: int = 0) -> bytes:
    """A classic TIFF header and one IFD of ``(tag, type, count, 4-byte value)`` entries."""
    magic = b"II*\x00" if order == "<" else b"MM\x00*"
    ifd = struct.pack(order + "H", len(entries))
    ifd += b"".join(struct.pack(order + "HHI", tag, kind, count) + value for tag, kind, count, value in entries)
    return magic + struct.pack(order + "I", 8 + padding) + b"\x00" * padding + ifd + struct.pack(order + "I", 0)


def _orientation_exif(order: str, orientation: int) -> bytes:
    entries = [(MAKE, 2, 4, b"cam\x00"), (ORIENTATION, 3, 1, struct.pack(order + "H", orientation) + b"\x00\x00")]
    return b"Exif\x00\x00" + _tiff(order, entries)


def _jpeg(mode: str, size: tuple[int, int], seed: int, progressive: bool, orientation: int | None,
          order: str, icc_bytes: int | None, comment: bool, dpi: bool) -> bytes:
    channels = {"L": 1, "RGB": 3, "CMYK": 4}[mode]
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], channels), dtype=np.uint8)
    image = Image.fromarray(pixels[..., 0] if mode == "L" else pixels, mode)
    options: dict = {"quality": 80, "progressive": progressive}
    if orientation is not None:
        options["exif"] = _orientation_exif(order, orientation)
    if icc_bytes is not None:
        options["icc_profile"] = bytes(range(256)) * (icc_bytes // 256) + b"\x01" * (icc_bytes % 256)
    if comment:
        options["comment"] = b"a comment"
    if dpi:
        options["dpi"] = (300, 300)
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", **options)
    return buffer.getvalue()


jpegs = st.builds(
    _jpeg,
    mode=st.sampled_from(["L", "RGB", "CMYK"]),
    size=st.tuples(st.integers(1, 48), st.integers(1, 48)),
    seed=st.integers(0, 2**16),
    progressive=st.booleans(),
    orientation=st.none() | st.integers(0, 9),
    order=st.sampled_from("<>"),
    icc_bytes=st.none() | st.integers(0, 600),
    comment=st.booleans(),
    dpi=st.booleans(),
)


def _segment(marker: int, payload: bytes) -> bytes:
    return bytes([0xFF, marker]) + struct.pack(">H", len(payload) + 2) + payload


# Segments PIL reads in ways the walk leaves to PIL, or that are damaged
ODD_SEGMENTS = {
    "xmp orientation": _segment(0xE1, b"http://ns.adobe.com/xap/1.0/\x00<x tiff:Orientation=\"6\"/>"),
    "cut photoshop block": _segment(0xED, b"Photoshop 3.0\x008BIM\x03\xed"),
    "mpo": _segment(0xE2, b"MPF\x00MM\x00*\x00\x00\x00\x08"),
    "short icc chunk": _segment(0xE2, b"ICC_PROFILE\x00\x01"),
    "short adobe": _segment(0xEE, b"Adobe\x00"),
    "short jfif": _segment(0xE0, b"JFIF\x00\x01"),
    "another exif": _segment(0xE1, _orientation_exif("<", 3)),
    # a LONG 65542 whose first two bytes read as SHORT 1
    "long orientation": _segment(0xE1, b"Exif\x00\x00" + _tiff(">", [(ORIENTATION, 4, 1, b"\x00\x01\x00\x06")])),
    # PIL skips the empty first entry and reads the second
    "two orientations": _segment(0xE1, b"Exif\x00\x00" + _tiff("<", [(ORIENTATION, 3, 0, b"\x01\x00\x00\x00"),
                                                                     (ORIENTATION, 3, 1, b"\x06\x00\x00\x00")])),
    "odd x resolution": _segment(0xE1, b"Exif\x00\x00" + _tiff("<", [(RESOLUTION_UNIT, 3, 1, b"\x02\x00\x00\x00"),
                                                                     (X_RESOLUTION, 7, 1, b"\x01\x00\x00\x00")])),
    "cut ifd": _segment(0xE1, b"Exif\x00\x00" + _tiff("<", [(ORIENTATION, 3, 1, b"\x06\x00\x00\x00")])[:14]),
    "doubled exif prefix": _segment(0xE1, b"Exif\x00\x00Exif\x00\x00" + _tiff("<", [])),
    "odd tiff magic": _segment(0xE1, b"Exif\x00\x00II\x00*\x08\x00\x00\x00"),
    "short quantization table": _segment(0xDB, b"\x00" + b"\x01" * 30),
    "sixteen-bit quantization table": _segment(0xDB, b"\x10" + b"\x00\x01" * 64),
    "restart interval": _segment(0xDD, b"\x00\x04"),
    "comment": _segment(0xFE, b"note"),
    "app7 holding an end marker": _segment(0xE7, b"\xff\xd9"),
    "hierarchical progression": _segment(0xDE, b"\x08\x00\x10\x00\x10\x01\x01\x11\x00"),  # PIL: a frame
    "12-bit frame": _segment(0xC1, b"\x0c\x00\x08\x00\x10\x01\x01\x11\x00"),
    "2-component frame": _segment(0xC0, b"\x08\x00\x08\x00\x10\x02\x01\x11\x00\x02\x11\x00"),
    "frame with a cut component": _segment(0xC0, b"\x08\x00\x08\x00\x10\x01\x01\x11"),
    "zero-height frame": _segment(0xC2, b"\x08\x00\x00\x00\x10\x01\x01\x11\x00"),
    "larger frame": _segment(0xC0, b"\x08\x00\x09\x00\x10\x01\x01\x11\x00"),
    "length below two": b"\xff\xe5\x00\x01",
    "fill bytes": b"\xff\xff",
    "junk": b"\x00\x00",
    "restart marker": b"\xff\xd0",
    "tem marker": b"\xff\x01",
}


def _pil_only_check(path: Path, expected_size: tuple[int, int] | None) -> bool:
    """What the checks did before the segment walk: PIL opens the file, then the same
    end-marker and size tests."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                image_format, size = image.format, image.size
                orientation = image.getexif().get(ExifTags.Base.Orientation, 1)
    except (OSError, SyntaxError, ValueError) as err:
        raise ReferFileError(f"{path}: not a readable image ({err})") from None
    marker = {"JPEG": b"\xff\xd9", "PNG": b"IEND"}.get(image_format or "")
    if marker is not None and marker not in path.read_bytes()[-4096:]:
        raise ReferFileError(f"{path}: truncated {image_format} (no end marker)")
    if expected_size and tuple(size) != expected_size:
        raise ReferFileError(f"{path}: image is {size[0]}x{size[1]}")
    return orientation not in (1, None)


def _outcome(check, path: Path, expected_size: tuple[int, int] | None) -> tuple[str, object]:
    """The check's result, or the kind of its failure (the first words after the path)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # PIL warns about some damaged EXIF blocks
            return "ok", check(path, expected_size)
    except ReferFileError as err:
        return "refused", str(err)[len(str(path)) + 2 :].split("(")[0].split(" but ")[0]
    except Exception as err:  # noqa: BLE001 - both checks must fail alike, whatever they raise
        return "raised", type(err).__name__


_FILES = Path(tempfile.mkdtemp(prefix="nemo_hf-test-images-"))


@settings(max_examples=200, deadline=None)
@given(jpegs)
def test_segment_walk_reads_size_and_orientation_like_pil(data):
    header = read_jpeg_header(data)
    assert header is not None  # plain JPEGs as PIL writes them: the walk must not need PIL
    with Image.open(io.BytesIO(data)) as image:
        assert header == (image.size, image.getexif().get(ExifTags.Base.Orientation, 1))


def _check_alike(data: bytes, expected_size: tuple[int, int] | None) -> None:
    path = _FILES / "damaged.jpg"
    path.write_bytes(data)
    ours, pils = _outcome(check_image_file, path, expected_size), _outcome(_pil_only_check, path, expected_size)
    # One difference is allowed, in the safe direction only: an EXIF block damaged so that some Pillow versions
    # drop it whole (12.3, which Gradio pins, drops an IFD entry whose count was cut; 13 keeps the orientation
    # beside it) while the segment walk still reads its orientation. The image is then stored without EXIF, its
    # pixels unchanged. The other way round (PIL would rotate and the walk would not see it) must never happen.
    assert ours == pils or (ours, pils) == (("ok", True), ("ok", False))


@settings(max_examples=300, deadline=None)
@given(jpegs, st.booleans(), st.integers(0, 2**16), st.integers(0, 255), st.none() | st.sampled_from([(1, 1), (48, 48)]))
def test_check_refuses_exactly_what_pil_refuses(data, truncate, where, value, expected_size):
    if truncate:
        data = data[: where % (len(data) + 1)]
    else:  # one byte of the header (neither check reads the scan data)
        position = where % min(len(data), 700)
        data = data[:position] + bytes([value]) + data[position + 1 :]
    _check_alike(data, expected_size)


@pytest.mark.parametrize("name", ODD_SEGMENTS)
@pytest.mark.parametrize("exif", [False, True])
@pytest.mark.parametrize("before", [b"", b"\xff\xdb", b"\xff\xda"])  # after the start, before the tables or the scan
def test_check_with_an_odd_segment_decides_like_pil(name, exif, before):
    data = _jpeg("RGB", (16, 8), 0, False, 1 if exif else None, ">", None, False, False)
    position = data.index(before) if before else 2
    _check_alike(data[:position] + ODD_SEGMENTS[name] + data[position:], (16, 8))


def test_multi_picture_file_decides_like_pil():
    """PIL opens an MPO (two JPEGs, the first announcing the second) as format "MPO", which
    gets no end-marker test: a cut second picture passes, as it did before the walk."""
    frames = [Image.fromarray(np.random.default_rng(seed).integers(0, 256, (128, 128, 3), dtype=np.uint8)) for seed in (1, 2)]
    buffer = io.BytesIO()
    frames[0].save(buffer, "MPO", save_all=True, append_images=frames[1:])
    data = buffer.getvalue()[:-2]
    assert len(buffer.getvalue()) - buffer.getvalue().rindex(b"\xff\xd8") > 4096
    _check_alike(data, (128, 128))
    assert _outcome(check_image_file, _FILES / "damaged.jpg", (128, 128)) == ("ok", False)


def _without_pil(monkeypatch):
    def refuse(path):
        raise AssertionError(f"{path} went to PIL")

    monkeypatch.setattr(images, "_pil_header", refuse)


def test_long_headers_are_read_without_pil(monkeypatch, tmp_path):
    """An EXIF block and an ICC profile push the scan past the first read."""
    exif = b"Exif\x00\x00" + _tiff(">", [(ORIENTATION, 3, 1, b"\x00\x08\x00\x00")], padding=9000)
    buffer = io.BytesIO()
    Image.new("RGB", (30, 20)).save(buffer, "JPEG", exif=exif, icc_profile=b"\x00" * 20000)
    path = tmp_path / "long_header.jpg"
    path.write_bytes(buffer.getvalue())
    assert buffer.getvalue().index(b"\xff\xda") > images._FIRST_READ
    _without_pil(monkeypatch)
    assert check_image_file(path, (30, 20)) is True
    with pytest.raises(ReferFileError, match=r"long_header.jpg: image is 30x20 but instances.json says 640x480"):
        check_image_file(path, (640, 480))


def test_a_jpeg_without_its_end_is_named_without_pil(monkeypatch, tmp_path):
    buffer = io.BytesIO()
    Image.new("L", (64, 64)).save(buffer, "JPEG")
    path = tmp_path / "cut.jpg"
    path.write_bytes(buffer.getvalue()[:-2])
    _without_pil(monkeypatch)
    with pytest.raises(ReferFileError, match=r"cut.jpg: truncated JPEG \(no end marker\)"):
        check_image_file(path)


@pytest.mark.parametrize("cut", [False, True])
def test_png_goes_to_pil(tmp_path, cut):
    buffer = io.BytesIO()
    Image.new("RGB", (5, 4)).save(buffer, "PNG")
    path = tmp_path / "image.png"
    path.write_bytes(buffer.getvalue()[:-12] if cut else buffer.getvalue())
    if cut:
        with pytest.raises(ReferFileError, match=r"image.png: truncated PNG"):
            check_image_file(path, (5, 4))
    else:
        assert check_image_file(path, (5, 4)) is False


def test_missing_file_is_named(tmp_path):
    with pytest.raises(ReferFileError, match=r"absent.jpg: not a readable image"):
        check_image_file(tmp_path / "absent.jpg")


@pytest.mark.parametrize("mode, image_format", [
    ("RGB", "PNG"), ("RGBA", "PNG"), ("L", "PNG"), ("LA", "PNG"), ("I;16", "PNG"), ("P", "PNG"), ("1", "PNG"),
    ("RGB", "WEBP"), ("RGBA", "WEBP"), ("CMYK", "JPEG")])
def test_without_exif_keeps_the_decoded_pixels_of_every_mode_and_drops_the_orientation(tmp_path, mode, image_format):
    """Any image ``datasets`` would rotate comes back as the pixels it stores, with no orientation left."""
    rng = np.random.default_rng(0)
    pixels = Image.fromarray(rng.integers(0, 256, (5, 7, 4), dtype=np.uint8), "RGBA")
    stored = pixels.convert("P") if mode == "P" else pixels.convert(mode)
    if mode == "P":
        stored.info["transparency"] = 3
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = 8
    path = tmp_path / f"rotated.{image_format.lower()}"
    options = {"lossless": True} if image_format == "WEBP" else {}
    stored.save(path, image_format, exif=exif, **options)
    assert check_image_file(path, (7, 5))  # the orientation is seen
    decoded = Image.open(path)
    plain = Image.open(io.BytesIO(images.without_exif(path)))
    assert plain.getexif().get(ExifTags.Base.Orientation) is None and plain.size == decoded.size == (7, 5)
    assert plain.info.get("transparency") == decoded.info.get("transparency")
    np.testing.assert_array_equal(np.asarray(plain.convert("RGBA")), np.asarray(decoded.convert("RGBA")))
