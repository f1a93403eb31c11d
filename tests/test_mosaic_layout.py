"""Grid layouts tile the canvas exactly; the cross point moves the dividing lines."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nemo_hf.mosaic import Box, grid_layout, sample_cross_point

fractions = st.floats(min_value=1e-6, max_value=1 - 1e-6, allow_nan=False)
cross_points = st.none() | st.tuples(fractions, fractions)


@settings(deadline=None)  # numpy work on up to 700² canvases; a loaded CI machine is slow
@given(grid=st.sampled_from([2, 3]), size=st.integers(3, 700), cross_point=cross_points)
def test_cells_tile_the_canvas_exactly(grid: int, size: int, cross_point: tuple[float, float] | None) -> None:
    boxes = grid_layout(grid, size, cross_point)
    assert len(boxes) == grid * grid
    coverage = np.zeros((size, size), dtype=np.int64)
    for box in boxes:
        assert box.width >= 1 and box.height >= 1
        coverage[box.top : box.bottom, box.left : box.right] += 1
    # Every pixel is covered exactly once: no gap, no overlap.
    assert (coverage == 1).all()
    assert sum(box.area for box in boxes) == size * size


@given(grid=st.sampled_from([2, 3]), size=st.integers(3, 700), cross_point=cross_points)
def test_cells_are_row_major(grid: int, size: int, cross_point: tuple[float, float] | None) -> None:
    boxes = grid_layout(grid, size, cross_point)
    for index, box in enumerate(boxes):
        row, col = divmod(index, grid)
        assert box.top == boxes[row * grid].top and box.left == boxes[col].left
        if col:
            assert box.left == boxes[index - 1].right
        if row:
            assert box.top == boxes[index - grid].bottom


@given(size=st.integers(10, 700), cx=fractions, cy=fractions)
def test_2x2_dividing_lines_sit_at_the_cross_point(size: int, cx: float, cy: float) -> None:
    first = grid_layout(2, size, (cx, cy))[0]
    # Rounding moves a line by at most half a pixel; clamping (each cell keeps a pixel) by one.
    assert abs(first.right - cx * size) <= 1
    assert abs(first.bottom - cy * size) <= 1


@given(size=st.integers(30, 700), cx=fractions)
def test_3x3_keeps_the_middle_column_a_third(size: int, cx: float) -> None:
    left, middle, right = grid_layout(3, size, (cx, 0.5))[:3]
    assert abs(middle.width - size / 3) <= 1.5
    assert abs(left.width - 2 * cx * size / 3) <= 1.5
    assert abs(right.width - 2 * (1 - cx) * size / 3) <= 1.5


def test_even_grid_is_the_centred_cross_point() -> None:
    for grid in (2, 3):
        assert grid_layout(grid, 481) == grid_layout(grid, 481, (0.5, 0.5))
    assert [b.size for b in grid_layout(3, 480)] == [(160, 160)] * 9


def test_boxes_are_pil_boxes() -> None:
    box = grid_layout(2, 10)[3]
    assert box == Box(5, 5, 10, 10) and tuple(box) == (5, 5, 10, 10)


@pytest.mark.parametrize(
    ("grid", "size", "cross_point", "match"),
    [
        (4, 100, None, "grid must be one of"),
        (1, 100, None, "grid must be one of"),
        (3, 2, None, "smaller than the grid"),
        (2, 100, (0.0, 0.5), "open interval"),
        (2, 100, (0.5, 1.0), "open interval"),
    ],
)
def test_bad_layouts_are_refused(grid: int, size: int, cross_point: tuple[float, float] | None, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        grid_layout(grid, size, cross_point)


@given(seed=st.integers(0, 2**32 - 1), jitter=st.floats(0.0, 0.499))
def test_sampled_cross_point_is_reproducible_and_in_range(seed: int, jitter: float) -> None:
    point = sample_cross_point(np.random.default_rng(seed), jitter)
    assert point == sample_cross_point(np.random.default_rng(seed), jitter)
    for value in point:
        assert 0.5 - jitter <= value <= 0.5 + jitter
    grid_layout(3, 64, point)  # always a valid cross point


def test_sampled_cross_points_spread_over_the_range() -> None:
    rng = np.random.default_rng(0)
    xs = np.array([sample_cross_point(rng, 0.25)[0] for _ in range(2000)])
    assert xs.min() < 0.26 and xs.max() > 0.74 and abs(xs.mean() - 0.5) < 0.02
    assert sample_cross_point(rng, 0.0) == (0.5, 0.5)


@pytest.mark.parametrize("jitter", [-0.1, 0.5, 0.7])
def test_bad_jitter_is_refused(jitter: float) -> None:
    with pytest.raises(ValueError, match="jitter"):
        sample_cross_point(np.random.default_rng(0), jitter)
