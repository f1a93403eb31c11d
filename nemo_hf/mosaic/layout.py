"""Grid layouts of a square mosaic canvas: 2×2 and 3×3, even or with a moving cross point.

A layout is a list of :class:`Box` cells in row-major order (cell ``i`` sits in row
``i // grid`` and column ``i % grid``) that tiles the ``size × size`` canvas exactly.

The cross point (*decided here*; the authors' released code has a moving cross point
option but no working definition for 3×3) is where the canvas centre moves to. Each axis
is warped piecewise-linearly so that its midpoint lands on the cross point's fraction,
and the even grid's dividing lines are carried along:

- 2×2: the single dividing line on each axis is the cross point itself;
- 3×3: the two lines on an axis sit at ``2c/3`` and ``c + (1 - c)/3`` of the side, so the
  middle row/column keeps a third of the side while the outer ones trade width.

Example:
    >>> grid_layout(2, 480)
    [Box(left=0, top=0, right=240, bottom=240), Box(left=240, top=0, right=480, bottom=240), Box(left=0, top=240, right=240, bottom=480), Box(left=240, top=240, right=480, bottom=480)]
    >>> [b.size for b in grid_layout(2, 100, cross_point=(0.25, 0.5))]
    [(25, 50), (75, 50), (25, 50), (75, 50)]
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

SUPPORTED_GRIDS = (2, 3)


class Box(NamedTuple):
    """A half-open pixel rectangle ``[left, right) × [top, bottom)``.

    It is a 4-tuple in PIL's order, so it can be passed to ``Image.paste``/``crop`` as is.

    Example:
        >>> b = Box(10, 20, 110, 70)
        >>> b.width, b.height, b.size, b.area
        (100, 50, (100, 50), 5000)
    """

    left: int
    top: int
    right: int
    bottom: int

    @property
    def width(self) -> int:
        return self.right - self.left

    @property
    def height(self) -> int:
        return self.bottom - self.top

    @property
    def size(self) -> tuple[int, int]:
        """``(width, height)``, PIL's size order."""
        return (self.width, self.height)

    @property
    def area(self) -> int:
        return self.width * self.height


def check_grid(grid: int) -> None:
    """Raise ``ValueError`` unless ``grid`` is one of :data:`SUPPORTED_GRIDS`.

    Example:
        >>> check_grid(3)
    """
    if grid not in SUPPORTED_GRIDS:
        raise ValueError(f"grid must be one of {SUPPORTED_GRIDS} (2×2 or 3×3 mosaic), got {grid!r}")


def _axis_cuts(grid: int, size: int, centre: float) -> list[int]:
    """Pixel positions of the ``grid - 1`` dividing lines of one axis, warped so 0.5 → centre."""
    cuts: list[int] = []
    for k in range(1, grid):
        t = k / grid
        warped = t * 2 * centre if t <= 0.5 else centre + (t - 0.5) * 2 * (1 - centre)
        # Round half up (not Python's half-to-even) so a layout never depends on parity quirks.
        cut = math.floor(warped * size + 0.5)
        # Every cell keeps at least one pixel, even for extreme cross points on tiny canvases.
        lowest = cuts[-1] + 1 if cuts else 1
        cuts.append(min(max(cut, lowest), size - (grid - k)))
    return cuts


def grid_layout(grid: int, size: int, cross_point: tuple[float, float] | None = None) -> list[Box]:
    """Cells of a ``grid × grid`` mosaic on a ``size × size`` canvas, in row-major order.

    Args:
        grid: 2 (four cells, the paper's mosaic) or 3 (nine cells, an ablation of the paper).
        size: side of the square canvas in pixels; at least ``grid``.
        cross_point: ``(x, y)`` fractions in (0, 1) where the canvas centre moves (see the
            module docstring for 3×3); ``None`` is the even grid, i.e. ``(0.5, 0.5)``.
            Each cell keeps at least one pixel.

    Raises:
        ValueError: for an unsupported grid, a canvas smaller than the grid, or a cross
            point outside the open unit square.

    Example:
        >>> [b.size for b in grid_layout(3, 300)]
        [(100, 100), (100, 100), (100, 100), (100, 100), (100, 100), (100, 100), (100, 100), (100, 100), (100, 100)]
        >>> [b.width for b in grid_layout(3, 300, cross_point=(0.2, 0.5))[:3]]
        [40, 100, 160]
    """
    check_grid(grid)
    if size < grid:
        raise ValueError(f"canvas size {size!r} is smaller than the grid {grid}; each cell needs a pixel")
    cx, cy = (0.5, 0.5) if cross_point is None else cross_point
    if not (0.0 < cx < 1.0 and 0.0 < cy < 1.0):
        raise ValueError(f"cross_point fractions must lie in the open interval (0, 1), got {cross_point!r}")
    xs = [0, *_axis_cuts(grid, size, cx), size]
    ys = [0, *_axis_cuts(grid, size, cy), size]
    return [Box(xs[c], ys[r], xs[c + 1], ys[r + 1]) for r in range(grid) for c in range(grid)]


def sample_cross_point(rng: np.random.Generator, jitter: float) -> tuple[float, float]:
    """Draw a cross point uniformly from ``[0.5 - jitter, 0.5 + jitter]`` on each axis.

    ``jitter=0`` gives the even grid; ``jitter=0.25`` keeps the centre within the middle
    half of the canvas, the range of the authors' code's bounded option (its unbounded
    option, the whole canvas, is the limit ``jitter → 0.5``).

    Raises:
        ValueError: if ``jitter`` is outside ``[0, 0.5)``.

    Example:
        >>> import numpy as np
        >>> sample_cross_point(np.random.default_rng(0), 0.0)
        (0.5, 0.5)
        >>> x, y = sample_cross_point(np.random.default_rng(0), 0.25)
        >>> 0.25 <= x <= 0.75 and 0.25 <= y <= 0.75
        True
    """
    if not 0.0 <= jitter < 0.5:
        raise ValueError(f"jitter must lie in [0, 0.5) so the cross point stays inside the canvas, got {jitter!r}")
    # Always two draws, so the caller's generator advances the same way whatever the jitter.
    x, y = rng.uniform(0.5 - jitter, 0.5 + jitter, size=2)
    return (float(x), float(y))
