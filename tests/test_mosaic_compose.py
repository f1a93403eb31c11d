"""Mosaic assembly: cells in order, target once, mask only in the target cell, blur on negatives only."""

from __future__ import annotations

import io

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from nemo_hf.mosaic import (
    Box,
    compose_mosaic,
    decode_to_cell,
    grid_layout,
    mask_to_cell,
    single_image,
)


def png(pixels: npt.NDArray[np.uint8]) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG")
    return buffer.getvalue()


def noisy_sources(count: int, seed: int, size: tuple[int, int] = (64, 48)) -> list[bytes]:
    """Distinct random images (lossless, so every cell can be compared exactly)."""
    rng = np.random.default_rng(seed)
    return [png(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)) for _ in range(count)]


def blob_mask(size: tuple[int, int], seed: int) -> npt.NDArray[np.bool_]:
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[: size[1], : size[0]]
    cx, cy = rng.uniform(0.2, 0.8) * size[0], rng.uniform(0.2, 0.8) * size[1]
    return np.asarray(((xs - cx) ** 2 + (ys - cy) ** 2) < (0.2 * min(size)) ** 2, dtype=bool)


layouts = st.builds(
    lambda grid, size, cross, jitter: grid_layout(grid, size, (0.5 + jitter[0], 0.5 + jitter[1]) if cross else None),
    grid=st.sampled_from([2, 3]),
    size=st.integers(12, 160),
    cross=st.booleans(),
    jitter=st.tuples(st.floats(-0.4, 0.4), st.floats(-0.4, 0.4)),
)


@settings(max_examples=40, deadline=None)
@given(boxes=layouts, data=st.data(), resize=st.sampled_from(["stretch", "letterbox"]), seed=st.integers(0, 99))
def test_cells_hold_target_and_negatives_in_order(
    boxes: list[Box], data: st.DataObject, resize: str, seed: int
) -> None:
    target_cell = data.draw(st.integers(0, len(boxes) - 1))
    target, *negatives = noisy_sources(len(boxes), seed)
    mask = blob_mask((64, 48), seed)
    mosaic, out = compose_mosaic(target, mask, negatives, boxes, target_cell, resize=resize)  # type: ignore[arg-type]
    assert mosaic.mode == "RGB" and mosaic.size == (boxes[-1].right, boxes[-1].bottom)
    assert out.dtype == np.bool_ and out.shape == (mosaic.height, mosaic.width)
    remaining = iter(negatives)
    for index, box in enumerate(boxes):
        source = target if index == target_cell else next(remaining)
        expected = decode_to_cell(source, box.size, resize)  # type: ignore[arg-type]
        assert mosaic.crop(box).tobytes() == expected.tobytes(), f"cell {index}"
    # The mask is the target's own mask in the target cell and background everywhere else.
    box = boxes[target_cell]
    expected_mask = np.zeros_like(out)
    expected_mask[box.top : box.bottom, box.left : box.right] = mask_to_cell(mask, box.size, resize)  # type: ignore[arg-type]
    np.testing.assert_array_equal(out, expected_mask)


@pytest.mark.parametrize("grid", [2, 3])
def test_target_appears_in_exactly_one_cell(grid: int) -> None:
    colours = [
        (255, 0, 0),
        (0, 255, 0),
        (0, 0, 255),
        (255, 255, 0),
        (0, 255, 255),
        (255, 0, 255),
        (90, 90, 90),
        (200, 120, 40),
        (10, 60, 130),
    ]
    sources = [Image.new("RGB", (40, 30), colour) for colour in colours[: grid * grid]]
    target, negatives = sources[0], sources[1:]
    for target_cell in range(grid * grid):
        mosaic, mask = compose_mosaic(target, np.ones((30, 40), bool), negatives, grid_layout(grid, 90), target_cell)
        pixels = np.asarray(mosaic)
        cells = [tuple(int(v) for v in pixels[box.top, box.left]) for box in grid_layout(grid, 90)]
        assert cells.count(colours[0]) == 1 and cells[target_cell] == colours[0]
        assert sorted(cells) == sorted(colours[: grid * grid])
        target_box = grid_layout(grid, 90)[target_cell]
        assert (
            mask.sum() == target_box.area
            and mask[target_box.top : target_box.bottom, target_box.left : target_box.right].all()
        )


@settings(max_examples=40, deadline=None)
@given(boxes=layouts, data=st.data(), resize=st.sampled_from(["stretch", "letterbox"]))
def test_mask_area_scales_with_the_target_cell(boxes: list[Box], data: st.DataObject, resize: str) -> None:
    target_cell = data.draw(st.integers(0, len(boxes) - 1))
    width, height = data.draw(st.integers(20, 300)), data.draw(st.integers(20, 300))
    x0, y0 = data.draw(st.integers(0, width - 10)), data.draw(st.integers(0, height - 10))
    x1, y1 = data.draw(st.integers(x0 + 10, width)), data.draw(st.integers(y0 + 10, height))
    mask = np.zeros((height, width), bool)
    mask[y0:y1, x0:x1] = True
    negatives = [Image.new("RGB", (8, 8))] * (len(boxes) - 1)
    _, out = compose_mosaic(Image.new("RGB", (width, height)), mask, negatives, boxes, target_cell, resize=resize)  # type: ignore[arg-type]
    box = boxes[target_cell]
    scale = min(box.width / width, box.height / height)
    sx, sy = (box.width / width, box.height / height) if resize == "stretch" else (scale, scale)
    expected_w, expected_h = (x1 - x0) * sx, (y1 - y0) * sy
    # Tolerance: nearest sampling keeps each side within one pixel of its scaled length, and
    # letterboxing rounds the content size by half a pixel per side: area within 1.5·(w' + h') + 1.5².
    assert abs(out.sum() - expected_w * expected_h) <= 1.5 * (expected_w + expected_h) + 2.25
    inside = out[box.top : box.bottom, box.left : box.right]
    assert inside.sum() == out.sum()


def test_blur_changes_negatives_only() -> None:
    target, *negatives = noisy_sources(4, seed=5, size=(80, 60))
    mask = blob_mask((80, 60), seed=5)
    boxes = grid_layout(2, 120)
    plain, plain_mask = compose_mosaic(target, mask, negatives, boxes, 2)
    blurred, blurred_mask = compose_mosaic(target, mask, negatives, boxes, 2, blur_negatives=True, blur_radius=3)
    np.testing.assert_array_equal(plain_mask, blurred_mask)
    assert plain.crop(boxes[2]).tobytes() == blurred.crop(boxes[2]).tobytes()
    for index in (0, 1, 3):
        sharp, soft = (np.asarray(m.crop(boxes[index]), dtype=float) for m in (plain, blurred))
        assert np.abs(np.diff(soft, axis=0)).mean() < np.abs(np.diff(sharp, axis=0)).mean() / 2, f"cell {index}"
    unblurred, _ = compose_mosaic(target, mask, negatives, boxes, 2, blur_negatives=False, blur_radius=3)
    assert unblurred.tobytes() == plain.tobytes()


@pytest.mark.parametrize("resize", ["stretch", "letterbox"])
def test_single_image_is_a_one_cell_mosaic(resize: str) -> None:
    (target,) = noisy_sources(1, seed=7, size=(64, 40))
    mask = blob_mask((64, 40), seed=7)
    image, out = single_image(target, mask, 96, resize)  # type: ignore[arg-type]
    assert image.size == (96, 96) and out.shape == (96, 96)
    assert image.tobytes() == decode_to_cell(target, (96, 96), resize).tobytes()  # type: ignore[arg-type]
    np.testing.assert_array_equal(out, mask_to_cell(mask, (96, 96), resize))  # type: ignore[arg-type]


def test_plain_tuples_work_as_boxes() -> None:
    mosaic, mask = compose_mosaic(
        Image.new("RGB", (4, 4), "white"),
        np.ones((4, 4)),
        [Image.new("RGB", (4, 4))],
        [(0, 0, 6, 10), (6, 0, 10, 10)],
        0,
    )
    assert mosaic.size == (10, 10) and mask[:, :6].all() and not mask[:, 6:].any()


def test_bad_inputs_are_refused() -> None:
    image, mask, boxes = Image.new("RGB", (8, 6)), np.ones((6, 8), bool), grid_layout(2, 20)
    negatives = [Image.new("RGB", (8, 6))] * 3
    with pytest.raises(ValueError, match=r"4 cells needs 3 negatives .* got 2"):
        compose_mosaic(image, mask, negatives[:2], boxes, 0)
    with pytest.raises(ValueError, match=r"4 cells needs 3 negatives .* got 4"):
        compose_mosaic(image, mask, [*negatives, image], boxes, 0)
    with pytest.raises(ValueError, match="target_cell 4 is out of range for 4 cells"):
        compose_mosaic(image, mask, negatives, boxes, 4)
    with pytest.raises(ValueError, match="target_cell -1"):
        compose_mosaic(image, mask, negatives, boxes, -1)
    with pytest.raises(ValueError, match=r"mask size \(6, 8\) \(w, h\) does not match its image size \(8, 6\)"):
        compose_mosaic(image, mask.T, negatives, boxes, 0)
    with pytest.raises(ValueError, match="cell box 1"):
        compose_mosaic(image, mask, negatives[:1], [(0, 0, 5, 5), (5, 0, 5, 5)], 0)
    with pytest.raises(ValueError, match="at least one cell box"):
        compose_mosaic(image, mask, [], [], 0)
