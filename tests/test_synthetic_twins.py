"""Counterfactual twins: alike but for one shape's category, each expression true of one image only."""

from __future__ import annotations

import numpy as np
import pytest

from nemo_hf.data.meaning import SIZES
from nemo_hf.synthetic import FAIR_WORLD
from nemo_hf.synthetic.scenes import CATEGORIES, PALETTE
from nemo_hf.synthetic.twins import category_twins

FAIR = {"image_size": (160, 120), "object_scale": 1.5, **FAIR_WORLD}


def _referents(text: str, shapes) -> list[int]:
    """The shapes an expression of the twins' forms ("the [size] colour category") fits, parsed on its own."""
    words = text.split()
    category = words[-1]
    colour = words[-2]
    size = words[-3] if len(words) >= 3 and words[-3] in SIZES else None
    assert category in {c.name for c in CATEGORIES} and colour in PALETTE
    return [k for k, s in enumerate(shapes)
            if s.category.name == category and s.colour == colour and size in (None, s.size)]


@pytest.fixture(scope="module")
def pairs():
    return category_twins(60, seed=11, **FAIR)


def test_twins_differ_in_one_shapes_category_alone(pairs) -> None:
    for pair in pairs:
        before, after = pair.scene.shapes, pair.twin_scene.shapes
        assert (pair.scene.width, pair.scene.height) == (pair.twin_scene.width, pair.twin_scene.height)
        assert len(before) == len(after)
        for k, (a, b) in enumerate(zip(before, after, strict=True)):
            assert (a.colour, a.size, a.cx, a.cy) == (b.colour, b.size, b.cx, b.cy)
            assert (a == b) == (k != pair.changed)
        new = after[pair.changed].category
        assert all(s.category != new for s in before), "the new category is one the scene lacked"


def test_each_expression_fits_exactly_one_shape_of_its_image_and_none_of_its_twin(pairs) -> None:
    for pair in pairs:
        assert _referents(pair.text, pair.scene.shapes) == [pair.changed]
        assert _referents(pair.text, pair.twin_scene.shapes) == []
        assert _referents(pair.twin_text, pair.twin_scene.shapes) == [pair.changed]
        assert _referents(pair.twin_text, pair.scene.shapes) == []


def test_twin_images_share_the_background_and_differ_around_the_changed_shape(pairs) -> None:
    """Pixels away from the changed shape (JPEG works in 16-px blocks) are identical; near it they differ."""
    for pair in pairs:
        a = np.asarray(pair.image).astype(int)
        b = np.asarray(pair.twin).astype(int)
        shape = pair.scene.shapes[pair.changed]
        points = np.concatenate([np.reshape(p, (-1, 2)) for p in shape.parts])
        radius = np.hypot(points[:, 0] - shape.cx, points[:, 1] - shape.cy).max()
        y, x = np.mgrid[: a.shape[0], : a.shape[1]]
        near = np.hypot(x - shape.cx, y - shape.cy) <= radius + 24
        changed = np.abs(a - b).sum(axis=-1)
        assert (changed[~near] == 0).all()
        assert (changed[near] > 60).sum() >= 5


def test_twins_are_a_pure_function_of_seed_and_index() -> None:
    first = category_twins(4, seed=3, **FAIR)
    again = category_twins(6, seed=3, **FAIR)[:4]
    other = category_twins(4, seed=4, **FAIR)
    assert [(p.text, p.twin_text, p.scene) for p in first] == [(p.text, p.twin_text, p.scene) for p in again]
    assert all(np.array_equal(np.asarray(p.twin), np.asarray(q.twin)) for p, q in zip(first, again, strict=True))
    assert [p.scene for p in first] != [p.scene for p in other]
