"""Absolute position words in an expression → mosaic cells where the target may go.

NeMo's position-aware placement puts the referred image in a cell that keeps the
expression true: "the man on the left" goes to the left column. The authors' code matches
words as raw substrings, so "yellow" reads as "low" and "laptop" as "top"; here a word
only counts as a whole word (regex ``\\b``, case-insensitive), so "leftover", "bright" and
"topping" never match while "top-left" and "left's" do.

Rules (*decided here*, documented for users):

- Each axis is read on its own. A horizontal word from one end only (``left``/``leftmost``
  or ``right``/``rightmost``) restricts the cell to that column; a vertical word from one
  end only (``top``, ``topmost``, ``highest``, ``upper``, ``uppermost``, ``above`` or
  ``bottom``, ``bottommost``, ``lowest``, ``lower``, ``lowermost``, ``below``, ``under``,
  ``underneath``, ``beneath``) restricts it to that row. Both axes → the single cell.
- Words from both ends of an axis ("left of the man on the right") are relative, not
  absolute: that axis is left free. The other axis still applies.
- 3×3 only: ``middle``/``center``/``centre``/``central`` put the target in the middle row
  and column on every axis no other word fixes ("middle left" → middle-left cell,
  "center" → centre cell). A 2×2 grid has no middle cell, so these words are ignored.
- No position word → every cell.

Example:
    >>> allowed_cells("guy on the far left", 2)
    [0, 2]
    >>> allowed_cells("yellow laptop, bright", 2)
    [0, 1, 2, 3]
    >>> allowed_cells("Top-left corner", 3)
    [0]
"""

from __future__ import annotations

import re

from nemo_hf.mosaic.layout import check_grid

POSITION_WORDS: dict[str, tuple[str, ...]] = {
    "left": ("left", "leftmost"),
    "right": ("right", "rightmost"),
    "top": ("top", "topmost", "highest", "upper", "uppermost", "above"),
    "bottom": ("bottom", "bottommost", "lowest", "lower", "lowermost", "below", "under", "underneath", "beneath"),
    "middle": ("middle", "center", "centre", "central"),
}
"""The vocabulary, by direction; matching is whole-word and case-insensitive."""

_PATTERNS = {
    direction: re.compile(r"\b(?:" + "|".join(words) + r")\b", re.IGNORECASE)
    for direction, words in POSITION_WORDS.items()
}


def _axis(grid: int, low_end: bool, high_end: bool) -> list[int] | None:
    """Indices allowed on one axis, or ``None`` when the sentence leaves it free."""
    if low_end == high_end:
        return None
    return [0] if low_end else [grid - 1]


def allowed_cells(sentence: str, grid: int) -> list[int]:
    """Row-major indices of the cells consistent with ``sentence``'s absolute position words.

    Cell ``i`` is in row ``i // grid`` and column ``i % grid``, the order of
    :func:`~nemo_hf.mosaic.layout.grid_layout`. See the module docstring for the rules.

    Raises:
        ValueError: for a grid other than 2 or 3.

    Example:
        >>> allowed_cells("the man on the left", 2)
        [0, 2]
        >>> allowed_cells("lower right", 3)
        [8]
        >>> allowed_cells("cup left of the plate on the right, at the top", 2)
        [0, 1]
        >>> allowed_cells("the middle one", 3), allowed_cells("the middle one", 2)
        ([4], [0, 1, 2, 3])
    """
    check_grid(grid)
    found = {direction: bool(pattern.search(sentence)) for direction, pattern in _PATTERNS.items()}
    cols = _axis(grid, found["left"], found["right"])
    rows = _axis(grid, found["top"], found["bottom"])
    if grid == 3 and found["middle"]:
        cols = [1] if cols is None else cols
        rows = [1] if rows is None else rows
    every = list(range(grid))
    return [r * grid + c for r in (rows or every) for c in (cols or every)]
