"""The meaning evaluator against a brute force written from the documented rules alone.

``fits`` and ``needed_kinds`` are checked on random frames and meanings against an
independent reading of the rules (thirds, dominant-axis relations, extremes by a 3%
margin among the objects fitting the rest) and an enumeration of every subset of the
stated kinds; the array version (``match_scores``) against ``fits``.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nemo_hf.data.meaning import (
    KINDS,
    SceneObject,
    check_meaning,
    fits,
    make_landmark,
    make_meaning,
    needed_kinds,
    referring_hard,
    restrict,
)
from nemo_hf.data.scene_batch import SceneBatch, match_scores

CATEGORIES = ("circle", "square", "star")
COLOURS = ("red", "blue", "green")
SIZE_CLASSES = ("small", "medium", "large")


# --------------------------------------------------------------------------- the brute force


def _third(value: float, side: float, names: tuple[str, str, str]) -> str:
    share = value / side
    if share < 1 / 3:
        return names[0]
    if share > 2 / 3:
        return names[2]
    return names[1]


def _where(a: SceneObject, b: SceneObject) -> str | None:
    dx, dy = a.x - b.x, a.y - b.y
    if abs(dx) > 1.3 * abs(dy):
        return "right" if dx > 0 else "left"
    if abs(dy) > 1.3 * abs(dx):
        return "below" if dy > 0 else "above"
    return None


def _appearance_ok(description: dict, o: SceneObject) -> bool:
    return all(description.get(f) in (None, getattr(o, f)) for f in ("category", "colour", "size"))


def brute_fits(meaning: dict, objects: list[SceneObject], frame: tuple[float, float]) -> list[int]:
    width, height = frame
    rest = []
    for k, o in enumerate(objects):
        if not _appearance_ok(meaning, o):
            continue
        if meaning["column"] and _third(o.x, width, ("left", "middle", "right")) != meaning["column"]:
            continue
        if meaning["row"] and _third(o.y, height, ("top", "middle", "bottom")) != meaning["row"]:
            continue
        relation = meaning["relation"]
        if relation and not [
            j for j, other in enumerate(objects)
            if j != k and _appearance_ok(relation["landmark"], other) and _where(o, other) == relation["direction"]
        ]:  # fmt: skip
            continue
        rest.append(k)
    word = meaning["extreme"]
    if not word:
        return rest
    out = []
    for k in rest:
        others = [objects[j] for j in rest if j != k]
        o = objects[k]
        if word == "leftmost":
            ok = all(o.x < p.x - 0.03 * width for p in others)
        elif word == "rightmost":
            ok = all(o.x > p.x + 0.03 * width for p in others)
        elif word == "topmost":
            ok = all(o.y < p.y - 0.03 * height for p in others)
        else:
            ok = all(o.y > p.y + 0.03 * height for p in others)
        if ok:
            out.append(k)
    return out


FIELD_KIND = {"category": "category", "colour": "colour", "size": "size", "column": "position", "row": "position",
              "extreme": "position", "relation": "relation"}  # fmt: skip


def brute_needs(meaning: dict, objects: list[SceneObject], frame: tuple[float, float], target: int) -> list[str] | None:
    """Every subset of the stated kinds (bit masks), those that single the target out, the least."""
    stated = sorted({FIELD_KIND[f] for f, v in meaning.items() if v is not None}, key=KINDS.index)
    singling = []
    for mask in range(1 << len(stated)):
        kinds = [stated[b] for b in range(len(stated)) if mask >> b & 1]
        reduced = {f: (v if FIELD_KIND[f] in kinds else None) for f, v in meaning.items()}
        if brute_fits(reduced, objects, frame) == [target]:
            singling.append(kinds)
    if not singling:
        return None
    return min(singling, key=lambda kinds: (len(kinds), [KINDS.index(k) for k in kinds]))


# --------------------------------------------------------------------------- strategies

objects_st = st.lists(
    st.builds(
        SceneObject,
        st.sampled_from(CATEGORIES),
        st.sampled_from(COLOURS),
        st.sampled_from(SIZE_CLASSES),
        # multiples of 5 up to 150 on frames of 90 and 150: centres often on a third's
        # boundary, offsets often on a relation's 1.3 ratio
        st.integers(0, 30).map(lambda v: 5.0 * v),
        st.integers(0, 30).map(lambda v: 5.0 * v),
    ),
    min_size=1,
    max_size=7,
)


def _maybe(values):
    return st.one_of(st.none(), st.sampled_from(values))


landmark_st = st.builds(
    lambda c, k, s: make_landmark(category=c, colour=k, size=s),
    _maybe(CATEGORIES), _maybe(COLOURS), _maybe(SIZE_CLASSES),
)  # fmt: skip
relation_st = st.one_of(
    st.none(),
    st.builds(lambda d, lm: {"direction": d, "landmark": lm}, st.sampled_from(("left", "right", "above", "below")),
              landmark_st),
)  # fmt: skip
meaning_st = st.builds(
    lambda c, k, s, col, row, ext, rel: make_meaning(category=c, colour=k, size=s, column=col, row=row, extreme=ext,
                                                     relation=rel),
    _maybe(CATEGORIES), _maybe(COLOURS), _maybe(SIZE_CLASSES), _maybe(("left", "middle", "right")),
    _maybe(("top", "middle", "bottom")), _maybe(("leftmost", "rightmost", "topmost", "lowest")), relation_st,
)  # fmt: skip
frame_st = st.tuples(st.sampled_from((90.0, 150.0, 151.0)), st.sampled_from((90.0, 150.0)))


# --------------------------------------------------------------------------- tests


@settings(max_examples=400, deadline=None)
@given(meaning=meaning_st, objects=objects_st, frame=frame_st)
def test_fits_agrees_with_the_rules_read_independently(meaning: dict, objects: list, frame: tuple) -> None:
    assert fits(meaning, objects, frame) == brute_fits(meaning, objects, frame)


@settings(max_examples=400, deadline=None)
@given(meaning=meaning_st, objects=objects_st, frame=frame_st, data=st.data())
def test_needs_is_the_least_singling_subset_of_the_brute_force(meaning: dict, objects: list, frame, data) -> None:
    target = data.draw(st.integers(0, len(objects) - 1))
    assert needed_kinds(meaning, objects, frame, target) == brute_needs(meaning, objects, frame, target)


def test_needs_breaks_ties_by_kind_order_and_is_empty_for_a_lone_object() -> None:
    objects = [SceneObject("circle", "red", "large", 10, 50), SceneObject("circle", "blue", "small", 90, 50)]
    meaning = make_meaning(category="circle", colour="red", size="large", column="left")
    # colour, size and position each single it out alone: colour comes first in KINDS
    assert needed_kinds(meaning, objects, (100, 100), 0) == ["colour"]
    assert needed_kinds(restrict(meaning, ["size", "position"]), objects, (100, 100), 0) == ["size"]
    assert needed_kinds(meaning, objects[:1], (100, 100), 0) == []
    twins = [objects[0], objects[0]._replace(x=12)]
    assert needed_kinds(make_meaning(category="circle", colour="red"), twins, (100, 100), 0) is None


def test_extremes_are_judged_among_objects_fitting_the_rest() -> None:
    row = [SceneObject("star", "red", "small", 10, 50), SceneObject("circle", "red", "small", 5, 50),
           SceneObject("star", "blue", "small", 50, 50)]  # fmt: skip
    assert fits(make_meaning(category="star", extreme="leftmost"), row, (100, 100)) == [0]
    assert fits(make_meaning(extreme="leftmost"), row, (100, 100)) == [1]
    # within the 3% margin nobody is leftmost
    close = [row[0], row[0]._replace(x=12)]
    assert fits(make_meaning(category="star", extreme="leftmost"), close, (100, 100)) == []


def test_relations_need_a_dominant_axis_and_another_object() -> None:
    ring, star = SceneObject("ring", "red", "small", 10, 50), SceneObject("star", "red", "small", 60, 80)
    left_of_star = make_meaning(relation={"direction": "left", "landmark": make_landmark(category="star")})
    assert fits(left_of_star, [ring, star], (100, 100)) == [0]  # dx=-50, dy=-30: |dx| > 1.3 |dy|
    diagonal = star._replace(y=50 + 40)  # dx=-50, dy=-40: no axis dominates
    assert fits(left_of_star, [ring, diagonal], (100, 100)) == []
    on_the_ratio = star._replace(x=75, y=100)  # |dx| = 65 = 1.3 * |dy|: dominance is strict
    assert fits(left_of_star, [ring, on_the_ratio], (200, 200)) == []
    assert fits(left_of_star, [ring, on_the_ratio._replace(x=75.5)], (200, 200)) == [0]


def test_thirds_are_strict_at_their_boundaries() -> None:
    ring = SceneObject("ring", "red", "small", 30, 60)  # exactly a third across, two thirds down
    assert fits(make_meaning(column="left"), [ring], (90, 90)) == []
    assert fits(make_meaning(column="middle", row="middle"), [ring], (90, 90)) == [0]
    assert fits(make_meaning(column="left"), [ring._replace(x=29.99)], (90, 90)) == [0]
    batch = SceneBatch.from_frames([1, 2], [([ring], (90, 90)), ([ring._replace(x=29.99, y=60.01)], (90, 90))])
    assert match_scores(make_meaning(column="left"), batch).exact[:, 0].tolist() == [False, True]
    assert match_scores(make_meaning(row="bottom"), batch).exact[:, 0].tolist() == [False, True]
    # an object is never its own landmark
    assert fits(make_meaning(relation={"direction": "left", "landmark": make_landmark(colour="red")}), [ring],
                (100, 100)) == []  # fmt: skip


@settings(max_examples=200, deadline=None)
@given(meaning=meaning_st, frames=st.lists(st.tuples(objects_st, frame_st), min_size=1, max_size=5))
def test_array_scores_mark_exactly_what_fits_and_count_satisfied_fields(meaning: dict, frames: list) -> None:
    batch = SceneBatch.from_frames(list(range(len(frames))), frames)
    scores = match_scores(meaning, batch)
    stated = [f for f, v in meaning.items() if v is not None]
    for i, (objects, frame) in enumerate(frames):
        assert np.flatnonzero(scores.exact[i]).tolist() == brute_fits(meaning, objects, frame)
        rest = [f for f in stated if f != "extreme"]
        for k in range(len(objects)):
            # each field on its own, the extreme judged among those satisfying all the rest
            alone = sum(bool(brute_fits(restrict_fields(meaning, [f]), objects, frame).count(k)) for f in rest)
            if "extreme" in stated:
                among = brute_fits(restrict_fields(meaning, rest), objects, frame)
                others = [j for j in among if j != k]
                # k (put first) against the others that satisfy the rest
                contest = [objects[k]] + [objects[j] for j in others]
                alone += 0 in brute_fits(restrict_fields(meaning, ["extreme"]), contest, frame)
            assert scores.satisfied[i, k] == alone, (meaning, objects, k)
        best = max((scores.satisfied[i, k] / len(stated) if stated else 1.0) for k in range(len(objects)))
        assert scores.image_scores()[i] == pytest.approx(best)


def restrict_fields(meaning: dict, fields: list[str]) -> dict:
    return {f: (v if f in fields else None) for f, v in meaning.items()}


def test_referring_hard_is_more_than_category_and_colour() -> None:
    assert not referring_hard([]) and not referring_hard(["category", "colour"]) and not referring_hard(None)
    assert all(referring_hard([kind]) for kind in ("size", "position", "relation"))


@pytest.mark.parametrize(
    ("meaning", "message"),
    [
        ({"category": "ring"}, "exactly the fields"),
        ({**make_meaning(), "column": "up"}, "column"),
        ({**make_meaning(), "relation": {"direction": "near", "landmark": make_landmark()}}, "direction"),
        ({**make_meaning(), "relation": {"direction": "left", "landmark": {"category": "x"}}}, "landmark"),
        ({**make_meaning(), "colour": 3}, "colour"),
    ],
)
def test_malformed_meanings_are_refused_naming_the_field(meaning: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        check_meaning(meaning)


def test_every_subset_order_is_the_documented_one() -> None:
    """combinations of the stated kinds in KINDS order: the brute force's tie rule is the same."""
    stated = ["colour", "size", "position"]
    assert [list(c) for c in itertools.combinations(stated, 2)] == [["colour", "size"], ["colour", "position"],
                                                                     ["size", "position"]]  # fmt: skip
