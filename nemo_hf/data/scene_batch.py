"""Many frames' objects as dense arrays, and one meaning scored against all of them at once.

:func:`~nemo_hf.data.meaning.fits` judges one frame in plain Python; scoring a sentence
against every image of a mining pool that way costs seconds per sentence. Here the
frames are padded to the largest object count and every rule of
:mod:`~nemo_hf.data.meaning` is a handful of array operations over all of them, so one
sentence against 1,500 images costs well under a millisecond. Pairwise directions (for
relations) are computed once per batch.

For each object, :func:`match_scores` counts the meaning's stated fields it satisfies
(an extreme is judged among the frame's objects that satisfy every other stated field,
as :func:`~nemo_hf.data.meaning.fits` does), so an object that satisfies all of them is
exactly one :func:`~nemo_hf.data.meaning.fits` returns. :func:`could_fit` asks the
question a frame cannot settle alone: could the meaning fit an object once its frame is
pasted somewhere into a larger one (a mosaic cell)?

>>> from nemo_hf.data.meaning import SceneObject, make_meaning
>>> frames = [([SceneObject("ring", "red", "small", 10, 10), SceneObject("ring", "blue", "large", 90, 10)], (100, 100)),
...           ([SceneObject("star", "red", "large", 50, 50)], (100, 100))]
>>> batch = SceneBatch.from_frames([7, 9], frames)
>>> scores = match_scores(make_meaning(category="ring", colour="red"), batch)
>>> scores.image_scores().tolist(), scores.exact.tolist()
([1.0, 0.5], [[True, False], [False, False]])
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from nemo_hf.data.meaning import (
    APPEARANCE,
    COLUMNS,
    DIRECTIONS,
    DOMINANCE,
    EXTREME_MARGIN,
    ROWS,
    SceneObject,
    stated_fields,
)

__all__ = ["MatchScores", "SceneBatch", "could_fit", "match_scores"]

_ABSENT = -1  # code of a padding slot
_UNKNOWN = -2  # code of a value no object has: equal to nothing


@dataclass(frozen=True)
class SceneBatch:
    """Objects of ``n`` frames padded to ``m`` slots: codes, centres and pairwise directions.

    ``category``/``colour``/``size`` hold codes of one shared vocabulary (``-1`` in padding
    slots); ``column``/``row`` index :data:`~nemo_hf.data.meaning.COLUMNS`/``ROWS``;
    ``direction[i, k, j]`` indexes :data:`~nemo_hf.data.meaning.DIRECTIONS` for where
    object ``k`` lies from object ``j`` of frame ``i`` (``-1``: no clear direction, the same
    object, or padding).
    """

    image_ids: np.ndarray  # (n,) int64
    width: np.ndarray  # (n,) float64
    height: np.ndarray  # (n,) float64
    present: np.ndarray  # (n, m) bool
    category: np.ndarray  # (n, m) int32
    colour: np.ndarray
    size: np.ndarray
    x: np.ndarray  # (n, m) float64
    y: np.ndarray
    column: np.ndarray  # (n, m) int8
    row: np.ndarray
    direction: np.ndarray  # (n, m, m) int8
    vocab: Mapping[str, int]

    @classmethod
    def from_frames(
        cls, image_ids: Sequence[int], frames: Sequence[tuple[Sequence[SceneObject], tuple[float, float]]]
    ) -> SceneBatch:
        """A batch of frames given as ``(objects, (width, height))``, one per image id."""
        n = len(frames)
        m = max((len(objects) for objects, _ in frames), default=0)
        vocab: dict[str, int] = {}
        codes = {name: np.full((n, m), _ABSENT, dtype=np.int32) for name in APPEARANCE}
        x, y = np.zeros((n, m)), np.zeros((n, m))
        present = np.zeros((n, m), dtype=bool)
        width, height = np.ones(n), np.ones(n)
        for i, (objects, (w, h)) in enumerate(frames):
            width[i], height[i] = w, h
            for k, obj in enumerate(objects):
                present[i, k] = True
                for name in APPEARANCE:
                    codes[name][i, k] = vocab.setdefault(getattr(obj, name), len(vocab))
                x[i, k], y[i, k] = obj.x, obj.y
        sx, sy = x / width[:, None], y / height[:, None]
        column = np.where(sx < 1 / 3, 0, np.where(sx > 2 / 3, 2, 1)).astype(np.int8)
        row = np.where(sy < 1 / 3, 0, np.where(sy > 2 / 3, 2, 1)).astype(np.int8)
        return cls(
            np.asarray(image_ids, dtype=np.int64), width, height, present, codes["category"], codes["colour"],
            codes["size"], x, y, column, row, _directions(x, y, present), vocab,
        )  # fmt: skip

    def __len__(self) -> int:
        return len(self.image_ids)

    def code(self, value: str) -> int:
        """The vocabulary code of ``value``; a value no object has matches nothing."""
        return self.vocab.get(value, _UNKNOWN)


def _directions(x: np.ndarray, y: np.ndarray, present: np.ndarray) -> np.ndarray:
    """``out[i, k, j]``: index into DIRECTIONS of where object k lies from object j, or -1."""
    dx = x[:, :, None] - x[:, None, :]
    dy = y[:, :, None] - y[:, None, :]
    horizontal = np.abs(dx) > DOMINANCE * np.abs(dy)
    vertical = np.abs(dy) > DOMINANCE * np.abs(dx)
    out = np.full(dx.shape, -1, dtype=np.int8)
    out[horizontal & (dx < 0)] = DIRECTIONS.index("left")
    out[horizontal & (dx > 0)] = DIRECTIONS.index("right")
    out[vertical & (dy < 0)] = DIRECTIONS.index("above")
    out[vertical & (dy > 0)] = DIRECTIONS.index("below")
    pair = present[:, :, None] & present[:, None, :]
    out[~pair] = -1
    return out


@dataclass(frozen=True)
class MatchScores:
    """Per object of a batch: how many of a meaning's ``stated`` fields it satisfies.

    ``satisfied`` is 0 in padding slots; ``exact`` marks the objects that satisfy every
    stated field (those :func:`~nemo_hf.data.meaning.fits` returns).
    """

    satisfied: np.ndarray  # (n, m) int
    exact: np.ndarray  # (n, m) bool
    present: np.ndarray  # (n, m) bool
    stated: int

    def object_scores(self) -> np.ndarray:
        """Share of the stated fields each object satisfies (1 for every object of an empty meaning)."""
        if self.stated == 0:
            return self.present.astype(np.float64)
        return np.where(self.present, self.satisfied / self.stated, 0.0)

    def image_scores(self) -> np.ndarray:
        """Per frame, the best object's share (0 for a frame with no objects)."""
        scores = self.object_scores()
        return scores.max(axis=1) if scores.shape[1] else np.zeros(len(scores))


def _looks(description: Mapping[str, Any], batch: SceneBatch) -> dict[str, np.ndarray]:
    codes = {"category": batch.category, "colour": batch.colour, "size": batch.size}
    return {f: codes[f] == batch.code(description[f]) for f in APPEARANCE if description[f] is not None}


def match_scores(meaning: Mapping[str, Any], batch: SceneBatch) -> MatchScores:
    """Score every object of ``batch`` against ``meaning``, each frame in its own frame.

    >>> from nemo_hf.data.meaning import SceneObject, make_meaning, make_landmark
    >>> objects = [SceneObject("ring", "red", "small", 10, 50), SceneObject("star", "red", "small", 60, 50)]
    >>> batch = SceneBatch.from_frames([1], [(objects, (100, 100))])
    >>> left_of_star = make_meaning(category="ring", relation={"direction": "left",
    ...                             "landmark": make_landmark(category="star")})
    >>> match_scores(left_of_star, batch).satisfied.tolist()
    [[2, 0]]
    """
    ok = _looks(meaning, batch)
    if meaning["column"] is not None:
        ok["column"] = batch.column == COLUMNS.index(meaning["column"])
    if meaning["row"] is not None:
        ok["row"] = batch.row == ROWS.index(meaning["row"])
    relation = meaning["relation"]
    if relation is not None:
        landmark = batch.present.copy()
        for hit in _looks(relation["landmark"], batch).values():
            landmark &= hit
        towards = batch.direction == DIRECTIONS.index(relation["direction"])
        ok["relation"] = (towards & landmark[:, None, :]).any(axis=2)
    rest = batch.present.copy()
    for hit in ok.values():
        rest &= hit
    if meaning["extreme"] is not None:
        ok["extreme"] = _extreme(meaning["extreme"], rest, batch)
    stated = len(stated_fields(meaning))
    satisfied = np.zeros(batch.present.shape, dtype=np.int32)
    for hit in ok.values():
        satisfied += hit
    satisfied = np.where(batch.present, satisfied, 0)
    exact = batch.present & (satisfied == stated)
    return MatchScores(satisfied, exact, batch.present, stated)


def _extreme(word: str, rest: np.ndarray, batch: SceneBatch) -> np.ndarray:
    """Per object: beyond every *other* object that satisfies the other fields, by the margin."""
    horizontal = word in ("leftmost", "rightmost")
    values = batch.x if horizontal else batch.y
    margin = EXTREME_MARGIN * (batch.width if horizontal else batch.height)[:, None, None]
    mine, theirs = values[:, :, None], values[:, None, :]
    beyond = mine < theirs - margin if word in ("leftmost", "topmost") else mine > theirs + margin
    m = values.shape[1]
    irrelevant = ~rest[:, None, :] | np.eye(m, dtype=bool)[None]
    return (beyond | irrelevant).all(axis=2)


def could_fit(meaning: Mapping[str, Any], batch: SceneBatch, columns: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Per frame: could ``meaning`` fit one of its objects once the frame is placed in a larger one?

    ``columns[i, k]`` / ``rows[i, k]`` are bit sets (bit ``c`` for ``COLUMNS[c]``/``ROWS[c]``)
    of the columns and rows of the larger frame that object ``k`` of frame ``i`` can land
    in. Appearance must match; column and row must be among the reachable ones; a
    relation and an extreme are taken to be satisfiable, as landmarks and rivals may lie
    anywhere in the larger frame. So a frame judged ``False`` can never hold an object the
    meaning fits, wherever it is placed.

    >>> from nemo_hf.data.meaning import SceneObject, make_meaning
    >>> batch = SceneBatch.from_frames([1], [([SceneObject("ring", "red", "small", 90, 50)], (100, 100))])
    >>> right_half = np.array([[0b110]])  # the object can only reach the middle or right column
    >>> any_row = np.array([[0b111]])
    >>> could_fit(make_meaning(category="ring", column="left"), batch, right_half, any_row).tolist()
    [False]
    >>> could_fit(make_meaning(category="ring", column="right"), batch, right_half, any_row).tolist()
    [True]
    """
    ok = batch.present.copy()
    for hit in _looks(meaning, batch).values():
        ok &= hit
    if meaning["column"] is not None:
        ok &= (columns >> COLUMNS.index(meaning["column"])) & 1 == 1
    if meaning["row"] is not None:
        ok &= (rows >> ROWS.index(meaning["row"])) & 1 == 1
    return ok.any(axis=1) if ok.shape[1] else np.zeros(len(ok), dtype=bool)
