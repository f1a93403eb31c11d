"""What a referring expression states, as data, and which objects of a frame it fits.

A *meaning* is a plain dict (JSON-ready) with every field below, ``None`` where the
expression does not state it:

- ``category``: a category name (``"circle"``), or ``None`` for "the red one";
- ``colour``: a colour name; ``size``: ``"small"``, ``"medium"`` or ``"large"`` (the
  size class, whatever word said it: "tiny" and "little" are ``"small"``);
- ``column``: ``"left"``, ``"middle"`` or ``"right"``: the third of the frame's width the
  object's centre lies in; ``row``: ``"top"``, ``"middle"`` or ``"bottom"``, by height;
- ``extreme``: ``"leftmost"``, ``"rightmost"``, ``"topmost"`` or ``"lowest"``: among the
  objects that fit every other field, the object's centre is beyond all the others' by
  at least 3% of the frame's width (height);
- ``relation``: ``{"direction": d, "landmark": {"category", "colour", "size"}}`` with
  ``d`` one of ``"left"``, ``"right"``, ``"above"``, ``"below"``: some *other* object
  fitting the landmark's appearance (its unstated fields ``None``) lies so that the object
  is ``d`` of it, one axis dominating: ``|dx| > 1.3 |dy|`` for left/right, ``|dy| > 1.3
  |dx|`` for above/below (y grows downwards).

Objects are :class:`SceneObject` (category, colour, size class, centre) and a frame is
``(width, height)``: the rules above are the ones the synthetic world's grammar uses when it
checks that a phrase picks out its object, so :func:`fits` gives the same answer.

The fields group into five **kinds**, :data:`KINDS` (``column``, ``row`` and ``extreme`` are
all ``position``). :func:`needed_kinds` is the smallest set of the stated kinds that already
fits only the target; :func:`referring_hard` tells whether that set goes beyond category
and colour.

>>> objects = [SceneObject("circle", "red", "small", 20, 50), SceneObject("circle", "red", "large", 80, 50),
...            SceneObject("square", "blue", "medium", 50, 50)]
>>> big_red = make_meaning(category="circle", colour="red", size="large")
>>> fits(big_red, objects, (100, 100))
[1]
>>> needed_kinds(big_red, objects, (100, 100), target=1)
['size']
>>> needed_kinds(make_meaning(category="circle", colour="red"), objects, (100, 100), target=1) is None
True
>>> left_of = make_meaning(category="circle", relation={"direction": "left",
...                        "landmark": make_landmark(category="square")})
>>> fits(left_of, objects, (100, 100)), referring_hard(["category", "relation"])
([0], True)
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple

__all__ = [
    "COLUMNS",
    "DIRECTIONS",
    "EXTREMES",
    "FIELDS",
    "KINDS",
    "KIND_OF",
    "ROWS",
    "SIZES",
    "SceneObject",
    "check_meaning",
    "column_of",
    "direction_of",
    "fits",
    "make_landmark",
    "make_meaning",
    "needed_kinds",
    "referring_hard",
    "restrict",
    "row_of",
    "stated_fields",
    "stated_kinds",
]

KINDS = ("category", "colour", "size", "position", "relation")
"""Kinds of stated constraint, in the order that breaks ties in :func:`needed_kinds`."""
FIELDS = ("category", "colour", "size", "column", "row", "extreme", "relation")
"""Every field of a meaning, each one constraint when stated."""
KIND_OF = {"category": "category", "colour": "colour", "size": "size", "column": "position", "row": "position",
           "extreme": "position", "relation": "relation"}  # fmt: skip
APPEARANCE = ("category", "colour", "size")
"""The fields a relation's landmark may state."""
EASY_KINDS = frozenset({"category", "colour"})
SIZES = ("small", "medium", "large")
COLUMNS = ("left", "middle", "right")
ROWS = ("top", "middle", "bottom")
EXTREMES = ("leftmost", "rightmost", "topmost", "lowest")
DIRECTIONS = ("left", "right", "above", "below")
# a relation holds only where one axis clearly dominates the offset
DOMINANCE = 1.3
# an extreme holds only by a clear margin, as a share of the frame's side
EXTREME_MARGIN = 0.03


class SceneObject(NamedTuple):
    """One object of a frame: what it is, its size class and its centre in pixels."""

    category: str
    colour: str
    size: str
    x: float
    y: float


def make_meaning(**stated: Any) -> dict[str, Any]:
    """A meaning with the ``stated`` fields and every other one ``None``.

    >>> make_meaning(colour="red")["category"] is None
    True
    """
    unknown = sorted(set(stated) - set(FIELDS))
    if unknown:
        raise ValueError(f"unknown meaning field(s) {unknown}; the fields are {', '.join(FIELDS)}")
    return check_meaning({field: stated.get(field) for field in FIELDS})


def make_landmark(**stated: Any) -> dict[str, Any]:
    """A relation's landmark: the appearance fields ``stated``, the others ``None``.

    >>> make_landmark(category="square")
    {'category': 'square', 'colour': None, 'size': None}
    """
    unknown = sorted(set(stated) - set(APPEARANCE))
    if unknown:
        raise ValueError(f"a landmark states only {', '.join(APPEARANCE)}; got {unknown}")
    return {field: stated.get(field) for field in APPEARANCE}


def _check_choice(where: str, value: Any, choices: Sequence[str] | None) -> None:
    if value is None:
        return
    if not isinstance(value, str) or (choices is not None and value not in choices):
        allowed = f"one of {', '.join(choices)}" if choices is not None else "a string"
        raise ValueError(f"meaning field {where} must be {allowed} or None, got {value!r}")


def check_meaning(meaning: Any) -> dict[str, Any]:
    """``meaning`` itself if it is a well-formed meaning, else a ``ValueError`` naming the field.

    >>> check_meaning({**make_meaning(), "size": "huge"})
    Traceback (most recent call last):
    ...
    ValueError: meaning field size must be one of small, medium, large or None, got 'huge'
    """
    if not isinstance(meaning, Mapping) or set(meaning) != set(FIELDS):
        keys = sorted(meaning) if isinstance(meaning, Mapping) else type(meaning).__name__
        raise ValueError(f"a meaning is a dict with exactly the fields {', '.join(FIELDS)}; got {keys}")
    for field, choices in (("category", None), ("colour", None), ("size", SIZES), ("column", COLUMNS),
                           ("row", ROWS), ("extreme", EXTREMES)):  # fmt: skip
        _check_choice(field, meaning[field], choices)
    relation = meaning["relation"]
    if relation is not None:
        if not isinstance(relation, Mapping) or set(relation) != {"direction", "landmark"}:
            raise ValueError(f"meaning field relation must be {{'direction', 'landmark'}} or None, got {relation!r}")
        if relation["direction"] not in DIRECTIONS:
            raise ValueError(
                f"relation direction must be one of {', '.join(DIRECTIONS)}, got {relation['direction']!r}"
            )
        landmark = relation["landmark"]
        if not isinstance(landmark, Mapping) or set(landmark) != set(APPEARANCE):
            raise ValueError(f"a relation's landmark is a dict of {', '.join(APPEARANCE)}; got {landmark!r}")
        for field in APPEARANCE:
            _check_choice(f"relation.landmark.{field}", landmark[field], SIZES if field == "size" else None)
    return meaning  # type: ignore[return-value]


def stated_fields(meaning: Mapping[str, Any]) -> list[str]:
    """The fields the meaning states, in :data:`FIELDS` order.

    >>> stated_fields(make_meaning(category="ring", row="top"))
    ['category', 'row']
    """
    return [field for field in FIELDS if meaning[field] is not None]


def stated_kinds(meaning: Mapping[str, Any]) -> list[str]:
    """The kinds the meaning states, in :data:`KINDS` order.

    >>> stated_kinds(make_meaning(category="ring", column="left", extreme="topmost"))
    ['category', 'position']
    """
    kinds = {KIND_OF[field] for field in stated_fields(meaning)}
    return [kind for kind in KINDS if kind in kinds]


def restrict(meaning: Mapping[str, Any], kinds: Iterable[str]) -> dict[str, Any]:
    """The meaning with only the fields of ``kinds`` kept (the others ``None``).

    >>> restrict(make_meaning(category="ring", colour="red", row="top"), ["colour"])["row"] is None
    True
    """
    keep = set(kinds)
    return {field: value if KIND_OF[field] in keep else None for field, value in meaning.items()}


def column_of(x: float, width: float) -> str:
    """The third of the frame's width a centre lies in.

    >>> column_of(10, 90), column_of(45, 90), column_of(61, 90)
    ('left', 'middle', 'right')
    """
    share = x / width
    return "left" if share < 1 / 3 else "right" if share > 2 / 3 else "middle"


def row_of(y: float, height: float) -> str:
    """The third of the frame's height a centre lies in (y grows downwards).

    >>> row_of(10, 90), row_of(80, 90)
    ('top', 'bottom')
    """
    share = y / height
    return "top" if share < 1 / 3 else "bottom" if share > 2 / 3 else "middle"


def direction_of(obj: SceneObject, landmark: SceneObject) -> str | None:
    """Where ``obj`` lies from ``landmark`` when one axis clearly dominates, else ``None``.

    >>> a, b = SceneObject("ring", "red", "small", 0, 0), SceneObject("star", "red", "small", 10, 5)
    >>> direction_of(a, b), direction_of(b, a)
    ('left', 'right')
    """
    dx, dy = obj.x - landmark.x, obj.y - landmark.y
    if abs(dx) > DOMINANCE * abs(dy):
        return "left" if dx < 0 else "right"
    if abs(dy) > DOMINANCE * abs(dx):
        return "above" if dy < 0 else "below"
    return None


def _looks(description: Mapping[str, Any], obj: SceneObject) -> bool:
    """Whether ``obj`` has the appearance the description states."""
    return all(description[f] is None or description[f] == getattr(obj, f) for f in APPEARANCE)


def _in_place(meaning: Mapping[str, Any], obj: SceneObject, frame: tuple[float, float]) -> bool:
    return (meaning["column"] is None or column_of(obj.x, frame[0]) == meaning["column"]) and (
        meaning["row"] is None or row_of(obj.y, frame[1]) == meaning["row"]
    )


def _related(relation: Mapping[str, Any] | None, k: int, objects: Sequence[SceneObject]) -> bool:
    if relation is None:
        return True
    return any(
        j != k and _looks(relation["landmark"], other) and direction_of(objects[k], other) == relation["direction"]
        for j, other in enumerate(objects)
    )


def _is_extreme(word: str, k: int, group: Sequence[int], objects: Sequence[SceneObject],
                frame: tuple[float, float]) -> bool:  # fmt: skip
    me = objects[k]
    others = [objects[j] for j in group if j != k]
    if word in ("leftmost", "rightmost"):
        margin, mine, theirs = EXTREME_MARGIN * frame[0], me.x, [o.x for o in others]
    else:
        margin, mine, theirs = EXTREME_MARGIN * frame[1], me.y, [o.y for o in others]
    if word in ("leftmost", "topmost"):
        return all(mine < t - margin for t in theirs)
    return all(mine > t + margin for t in theirs)


def fits(meaning: Mapping[str, Any], objects: Sequence[SceneObject], frame: tuple[float, float]) -> list[int]:
    """Indices of the ``objects`` of a ``frame`` (``(width, height)``) that ``meaning`` fits.

    An extreme is judged among the objects that fit every other field; with only one such
    object it holds for that one.

    >>> row = [SceneObject("star", "red", "small", x, 50) for x in (10, 40, 41)]
    >>> fits(make_meaning(category="star", extreme="leftmost"), row, (100, 100))
    [0]
    >>> fits(make_meaning(category="star", extreme="rightmost"), row, (100, 100))
    []
    """
    base = [
        k
        for k, obj in enumerate(objects)
        if _looks(meaning, obj) and _in_place(meaning, obj, frame) and _related(meaning["relation"], k, objects)
    ]
    if meaning["extreme"] is None:
        return base
    return [k for k in base if _is_extreme(meaning["extreme"], k, base, objects, frame)]


def needed_kinds(
    meaning: Mapping[str, Any], objects: Sequence[SceneObject], frame: tuple[float, float], target: int
) -> list[str] | None:
    """The smallest set of the meaning's stated kinds that fits only ``target``; ``None`` if none does.

    Subsets are tried by size, and among subsets of one size in the order of
    :data:`KINDS` (``itertools.combinations`` of the stated kinds listed in that order), so
    where both ``["colour"]`` and ``["size"]`` would do, the answer is ``["colour"]``.
    The empty set is the answer when the target is the frame's only object. ``None`` means
    even the whole meaning fits another object too (or misses the target).

    >>> lone = [SceneObject("ring", "red", "small", 5, 5)]
    >>> needed_kinds(make_meaning(category="ring", colour="red"), lone, (10, 10), 0)
    []
    """
    kinds = stated_kinds(meaning)
    for size in range(len(kinds) + 1):
        for subset in itertools.combinations(kinds, size):
            if fits(restrict(meaning, subset), objects, frame) == [target]:
                return list(subset)
    return None


def referring_hard(needs: Sequence[str] | None) -> bool:
    """Whether a sentence needs more than category and colour to single out its target.

    ``None`` (not known, or the sentence does not single its target out) is not hard.

    >>> referring_hard(["colour"]), referring_hard(["category", "size"]), referring_hard(None)
    (False, True, False)
    """
    return needs is not None and not set(needs) <= EASY_KINDS
