"""Cell decoding (DCT-scaled JPEG decode, stretch/letterbox, blur) and the matching mask transform."""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from nemo_hf.mosaic import (
    CLIP_MEAN_FILL,
    MaskLike,
    Resize,
    cell_geometry,
    decode_to_cell,
    draft_decode,
    mask_to_cell,
)


def textured(width: int, height: int, seed: int) -> Image.Image:
    """A photo-like image: 1/f noise (the spectrum of natural images) with correlated channels."""
    rng = np.random.default_rng(seed)
    fy, fx = np.fft.fftfreq(height)[:, None], np.fft.rfftfreq(width)[None, :]
    amplitude = 1.0 / np.maximum(np.hypot(fx, fy), 1.0 / max(width, height)) ** 1.2

    def field() -> npt.NDArray[np.float64]:
        phases = np.exp(2j * np.pi * rng.random(amplitude.shape))
        return np.fft.irfft2(amplitude * phases, s=(height, width))

    luminance = field()
    pixels = np.stack([luminance + 0.3 * field() for _ in range(3)], axis=-1)
    pixels = (pixels - pixels.mean()) / pixels.std() * 50 + 120
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def encode(image: Image.Image, fmt: str = "JPEG") -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **({"quality": 90} if fmt == "JPEG" else {}))
    return buffer.getvalue()


def reference_cell(data: bytes, cell_size: tuple[int, int], resize: str) -> npt.NDArray[np.float64]:
    """Full-size decode, then resize: the slow path draft decoding must match."""
    full = Image.open(io.BytesIO(data)).convert("RGB")
    scale = min(cell_size[0] / full.width, cell_size[1] / full.height)
    if resize == "stretch":
        size, offset = cell_size, (0, 0)
    else:
        size = (round(full.width * scale), round(full.height * scale))
        offset = ((cell_size[0] - size[0]) // 2, (cell_size[1] - size[1]) // 2)
    cell = Image.new("RGB", cell_size, CLIP_MEAN_FILL)
    cell.paste(full.resize(size, Image.Resampling.BILINEAR), offset)
    return np.asarray(cell, dtype=np.float64)


@pytest.fixture(scope="module")
def coco_jpeg() -> bytes:
    return encode(textured(640, 480, seed=0))


# --- DCT-scaled decoding -------------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(
    width=st.integers(8, 400),
    height=st.integers(8, 400),
    target_w=st.integers(1, 400),
    target_h=st.integers(1, 400),
)
def test_draft_decode_is_never_smaller_than_asked(width: int, height: int, target_w: int, target_h: int) -> None:
    data = encode(Image.new("RGB", (width, height), (90, 140, 200)))
    image, box = draft_decode(data, (target_w, target_h))
    assert image.mode == "RGB"
    # libjpeg scales by 1/1, 1/2, 1/4 or 1/8; the coarsest scale that keeps both sides large enough.
    limit = min(width // target_w, height // target_h)
    scale = max(s for s in (1, 2, 4, 8) if s <= max(limit, 1))
    assert image.size == (math.ceil(width / scale), math.ceil(height / scale))
    assert (image.width >= target_w or image.width == width) and (image.height >= target_h or image.height == height)
    assert box == (0, 0, width / scale, height / scale)


def test_draft_decode_shrinks_coco_sized_images(coco_jpeg: bytes) -> None:
    assert draft_decode(coco_jpeg, (240, 240))[0].size == (320, 240)
    assert draft_decode(coco_jpeg, (160, 120))[0].size == (160, 120)
    assert draft_decode(coco_jpeg, (640, 480))[0].size == (640, 480)


@pytest.mark.parametrize("resize", ["stretch", "letterbox"])
@pytest.mark.parametrize("cell_size", [(240, 240), (160, 160), (300, 200), (97, 211), (60, 45)])
def test_draft_decode_matches_full_decode_then_resize(
    coco_jpeg: bytes, cell_size: tuple[int, int], resize: Resize
) -> None:
    cell = np.asarray(decode_to_cell(coco_jpeg, cell_size, resize), dtype=np.float64)
    slow = reference_cell(coco_jpeg, cell_size, resize)
    # Grey levels (0–255): the paths differ only by their low-pass filters (scaled IDCT +
    # bilinear vs bilinear), by about 1% of the range on this texture.
    assert np.abs(cell - slow).mean() < 3.0
    # And draft loses no quality: it is about as close to a Lanczos downscale of the full
    # decode as the slow path is.
    full = Image.open(io.BytesIO(coco_jpeg)).convert("RGB")
    (w, h), (x, y) = cell_geometry(full.size, cell_size, resize)
    ideal = np.asarray(full.resize((w, h), Image.Resampling.LANCZOS), dtype=np.float64)
    draft_error = np.abs(cell[y : y + h, x : x + w] - ideal).mean()
    slow_error = np.abs(slow[y : y + h, x : x + w] - ideal).mean()
    assert draft_error <= 1.25 * slow_error + 0.5, (draft_error, slow_error)


def test_png_sources_are_decoded_at_full_size() -> None:
    image = textured(200, 100, seed=1)
    cell = decode_to_cell(encode(image, "PNG"), (50, 50))
    assert cell.tobytes() == image.resize((50, 50), Image.Resampling.BILINEAR).tobytes()


def test_all_source_kinds_agree(coco_jpeg: bytes, tmp_path: Path) -> None:
    path = tmp_path / "image.jpg"
    path.write_bytes(coco_jpeg)
    expected = decode_to_cell(coco_jpeg, (120, 90)).tobytes()
    for source in (str(path), path, {"bytes": coco_jpeg, "path": None}, {"bytes": None, "path": str(path)}):
        assert decode_to_cell(source, (120, 90)).tobytes() == expected
    held = Image.open(path)
    from_pil = decode_to_cell(held, (120, 90))
    # A caller's image is decoded at full size and never mutated by draft().
    assert held.size == (640, 480)
    assert (
        from_pil.tobytes()
        == Image.fromarray(reference_cell(coco_jpeg, (120, 90), "stretch").astype(np.uint8)).tobytes()
    )


@pytest.mark.parametrize("mode", ["L", "RGBA", "P", "CMYK"])
def test_other_modes_come_back_rgb(mode: str) -> None:
    image = textured(64, 48, seed=2).convert(mode)
    cell = decode_to_cell(image, (32, 32))
    assert cell.mode == "RGB" and cell.size == (32, 32)


def test_bad_sources_are_refused() -> None:
    with pytest.raises(TypeError, match="cannot read an image from a int"):
        decode_to_cell(3, (10, 10))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="neither 'bytes' nor 'path'"):
        decode_to_cell({"bytes": None, "path": None}, (10, 10))
    with pytest.raises(ValueError, match="resize must be one of"):
        decode_to_cell(Image.new("RGB", (4, 4)), (10, 10), "crop")  # type: ignore[arg-type]


# --- geometry ------------------------------------------------------------------------------


@given(
    src=st.tuples(st.integers(1, 2000), st.integers(1, 2000)),
    cell=st.tuples(st.integers(1, 600), st.integers(1, 600)),
)
def test_letterbox_keeps_aspect_and_centres(src: tuple[int, int], cell: tuple[int, int]) -> None:
    (w, h), (x, y) = cell_geometry(src, cell, "letterbox")
    scale = min(cell[0] / src[0], cell[1] / src[1])
    assert 1 <= w <= cell[0] and 1 <= h <= cell[1]
    assert w == cell[0] or h == cell[1]  # one side fills the cell
    assert abs(w - max(1.0, src[0] * scale)) <= 0.5 + 1e-9 and abs(h - max(1.0, src[1] * scale)) <= 0.5 + 1e-9
    assert x == (cell[0] - w) // 2 and y == (cell[1] - h) // 2
    assert cell_geometry(src, cell, "stretch") == (cell, (0, 0))


# --- masks ---------------------------------------------------------------------------------


def nearest_candidates(n_in: int, n_out: int) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Source index sampled by each output pixel centre; two candidates where the centre
    falls exactly on a source pixel boundary (PIL breaks such ties by float rounding)."""
    numerator = (2 * np.arange(n_out) + 1) * n_in  # centre = numerator / (2 * n_out), exactly
    low = numerator // (2 * n_out)
    tie = numerator % (2 * n_out) == 0
    return np.where(tie, low - 1, low), low


@settings(max_examples=60, deadline=None)
@given(
    data=st.data(),
    src=st.tuples(st.integers(1, 50), st.integers(1, 50)),
    cell=st.tuples(st.integers(1, 50), st.integers(1, 50)),
    resize=st.sampled_from(["stretch", "letterbox"]),
)
def test_mask_matches_brute_force_nearest(
    data: st.DataObject, src: tuple[int, int], cell: tuple[int, int], resize: str
) -> None:
    bits = data.draw(st.lists(st.booleans(), min_size=src[0] * src[1], max_size=src[0] * src[1]))
    mask = np.array(bits, dtype=bool).reshape(src[1], src[0])
    out = mask_to_cell(mask, cell, resize)  # type: ignore[arg-type]
    (w, h), (x, y) = cell_geometry(src, cell, resize)  # type: ignore[arg-type]
    rows, cols = nearest_candidates(src[1], h), nearest_candidates(src[0], w)
    content = out[y : y + h, x : x + w]
    options = [mask[np.ix_(r, c)] for r in rows for c in cols]
    assert np.logical_or.reduce([content == option for option in options]).all()
    outside = out.copy()
    outside[y : y + h, x : x + w] = False
    assert not outside.any()


@settings(max_examples=80, deadline=None)
@given(
    src=st.tuples(st.integers(20, 700), st.integers(20, 700)),
    cell=st.tuples(st.integers(10, 300), st.integers(10, 300)),
    corners=st.tuples(st.floats(0, 0.9), st.floats(0, 0.9), st.floats(0.05, 1), st.floats(0.05, 1)),
    resize=st.sampled_from(["stretch", "letterbox"]),
)
def test_mask_area_follows_the_scale_factor(
    src: tuple[int, int], cell: tuple[int, int], corners: tuple[float, float, float, float], resize: str
) -> None:
    fx, fy, fw, fh = corners
    x0, y0 = int(fx * src[0]), int(fy * src[1])
    x1, y1 = min(src[0], x0 + max(1, int(fw * src[0]))), min(src[1], y0 + max(1, int(fh * src[1])))
    mask = np.zeros((src[1], src[0]), dtype=bool)
    mask[y0:y1, x0:x1] = True
    out = mask_to_cell(mask, cell, resize)  # type: ignore[arg-type]
    (w, h), _ = cell_geometry(src, cell, resize)  # type: ignore[arg-type]
    sx, sy = w / src[0], h / src[1]
    ys, xs = np.nonzero(out)
    # Tolerance: nearest sampling keeps each side within one output pixel of its scaled length
    # (a side shorter than one output pixel may vanish), so the area is within w' + h' + 1.
    expected_w, expected_h = (x1 - x0) * sx, (y1 - y0) * sy
    if xs.size == 0:
        assert expected_w < 1 or expected_h < 1
        return
    kept_w, kept_h = xs.max() - xs.min() + 1, ys.max() - ys.min() + 1
    assert out.sum() == kept_w * kept_h  # still a solid rectangle
    # <= 1, not < 1: at an exact boundary (20 -> 270 px, a 2-px side, 27.0 expected) float rounding in the
    # sampler keeps 28 output pixels (hypothesis found it)
    assert abs(kept_w - expected_w) <= 1 and abs(kept_h - expected_h) <= 1
    assert abs(out.sum() - expected_w * expected_h) <= expected_w + expected_h + 1


def test_mask_input_kinds_agree() -> None:
    rng = np.random.default_rng(3)
    mask = rng.random((37, 53)) < 0.3
    expected = mask_to_cell(mask, (40, 30), "letterbox")
    assert expected.dtype == np.bool_ and expected.shape == (30, 40)
    kinds: list[MaskLike] = [
        mask.astype(np.uint8),
        mask.astype(np.uint8) * 255,
        mask.astype(np.int64) * 7,
        Image.fromarray(mask.astype(np.uint8) * 255),
        Image.fromarray(mask),
    ]
    for kind in kinds:
        np.testing.assert_array_equal(mask_to_cell(kind, (40, 30), "letterbox", src_size=(53, 37)), expected)


def test_bad_masks_are_refused() -> None:
    with pytest.raises(ValueError, match=r"mask size \(53, 37\) \(w, h\) does not match its image size \(37, 53\)"):
        mask_to_cell(np.zeros((37, 53)), (10, 10), src_size=(37, 53))
    with pytest.raises(ValueError, match="mode 'L' or '1', got mode 'RGB'"):
        mask_to_cell(Image.new("RGB", (5, 5)), (10, 10))
    with pytest.raises(ValueError, match="must be 2-D"):
        mask_to_cell(np.zeros((5, 5, 3)), (10, 10))


@pytest.mark.parametrize("src", [(640, 480), (333, 500), (100, 100), (501, 97)])
@pytest.mark.parametrize("cell", [(240, 240), (160, 90), (71, 130)])
def test_letterboxed_image_and_mask_agree(src: tuple[int, int], cell: tuple[int, int]) -> None:
    mask = np.zeros((src[1], src[0]), dtype=bool)
    mask[src[1] // 5 : src[1] * 3 // 4, src[0] // 3 : src[0] * 9 // 10] = True
    # The image shows its own mask: white on black, so image geometry can be read from pixels.
    picture = Image.fromarray(np.repeat(mask[..., None].astype(np.uint8) * 255, 3, axis=-1))
    fill = (255, 0, 0)
    cell_image = np.asarray(decode_to_cell(encode(picture, "PNG"), cell, "letterbox", fill=fill)).astype(int)
    cell_mask = mask_to_cell(mask, cell, "letterbox", src_size=src)
    padding = (cell_image == fill).all(axis=-1)
    (w, h), (x, y) = cell_geometry(src, cell, "letterbox")
    content = np.zeros(cell_mask.shape, dtype=bool)
    content[y : y + h, x : x + w] = True
    np.testing.assert_array_equal(padding, ~content)
    # A full mask marks exactly the pixels the image covers: same size, same offset.
    full_mask = mask_to_cell(np.ones_like(mask), cell, "letterbox", src_size=src)
    np.testing.assert_array_equal(full_mask, ~padding)
    white = cell_image.mean(axis=-1) > 127
    overlap = (white & cell_mask).sum() / (white | cell_mask).sum()
    assert overlap > 0.9, overlap


# --- blur ----------------------------------------------------------------------------------


def test_blur_softens_the_image_but_not_the_padding(coco_jpeg: bytes) -> None:
    sharp = np.asarray(decode_to_cell(coco_jpeg, (200, 200), "letterbox")).astype(float)
    blurred = np.asarray(decode_to_cell(coco_jpeg, (200, 200), "letterbox", blur_radius=8)).astype(float)
    (_, h), (_, y) = cell_geometry((640, 480), (200, 200), "letterbox")
    np.testing.assert_array_equal(sharp[:y], blurred[:y])
    np.testing.assert_array_equal(sharp[y + h :], blurred[y + h :])
    roughness = [np.abs(np.diff(a[y : y + h], axis=1)).mean() for a in (sharp, blurred)]
    assert roughness[1] < roughness[0] / 2
    assert abs(sharp[y : y + h].mean() - blurred[y : y + h].mean()) < 3  # blur keeps the colours
    no_blur = decode_to_cell(coco_jpeg, (200, 200), "letterbox", blur_radius=0)
    assert no_blur.tobytes() == sharp.astype(np.uint8).tobytes()


@pytest.mark.parametrize("image_format", ["JPEG", "PNG"])
@pytest.mark.parametrize("given_as", ["pil", "bytes", "path", "value with bytes", "value with path"])
def test_a_mask_is_checked_against_its_image_however_the_image_is_held(tmp_path, image_format, given_as) -> None:
    import io

    from nemo_hf.mosaic import check_mask_fits

    buffer = io.BytesIO()
    Image.new("RGB", (53, 37), "teal").save(buffer, image_format)
    path = tmp_path / f"image.{image_format.lower()}"
    path.write_bytes(buffer.getvalue())
    image = {"pil": Image.open(path), "bytes": buffer.getvalue(), "path": str(path),
             "value with bytes": {"bytes": buffer.getvalue(), "path": "elsewhere.jpg"},
             "value with path": {"bytes": None, "path": str(path)}}[given_as]
    for mask in (np.zeros((37, 53), bool), Image.new("L", (53, 37))):
        check_mask_fits(mask, image, "ref 1")
    for mask in (np.zeros((53, 37), bool), Image.new("1", (37, 53))):
        with pytest.raises(ValueError, match=r"^ref 1 \(sent_id 4\): its mask is 37x53 but its image is 53x37"):
            check_mask_fits(mask, image, "ref 1 (sent_id 4)")
