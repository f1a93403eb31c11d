"""Scenes stay valid in small images: shapes visible (a radius floor), apart, sizes in order.

The experiment trains on images of about 96–128 px, where the size fractions of a 320 px
scene would draw shapes of 4 px. Checked twice: on the generator's own scene description
for many random scenes, and on the written JPEGs and masks, measured from the pixels.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nemo_hf.synthetic import make_refer_dataset
from nemo_hf.synthetic import scenes
from nemo_hf.synthetic.scenes import MIN_RADIUS, Scene, make_scene
from tests.test_synthetic import measure, morph

SIZE_ORDER = ("small", "medium", "large")


def radii(scene: Scene) -> list[float]:
    """Each shape's outline radius: its farthest vertex from its centre."""
    out = []
    for shape in scene.shapes:
        points = np.concatenate([np.reshape(part, (-1, 2)) for part in shape.parts])
        out.append(float(np.hypot(points[:, 0] - shape.cx, points[:, 1] - shape.cy).max()))
    return out


@settings(max_examples=150, deadline=None)
@given(
    width=st.integers(64, 200),
    height=st.integers(64, 200),
    level=st.integers(0, 3),
    seed=st.integers(0, 2**32 - 1),
)
def test_small_scenes_keep_shapes_visible_apart_and_in_size_order(width: int, height: int, level: int, seed: int):
    scene = make_scene(np.random.default_rng(seed), (width, height), level, None)
    r = radii(scene)
    # a cross's bar corners lie at 0.996 of its radius; vertices are rounded to 0.01 px
    assert min(r) >= 0.99 * MIN_RADIUS - 0.01
    for shape, radius in zip(scene.shapes, r, strict=True):
        assert radius <= shape.cx <= scene.width - radius and radius <= shape.cy <= scene.height - radius
    for (a, ra), (b, rb) in itertools.combinations(zip(scene.shapes, r, strict=True), 2):
        assert np.hypot(a.cx - b.cx, a.cy - b.cy) - ra - rb >= 6 - 0.02  # outlines 6 px apart
        if SIZE_ORDER.index(a.size) < SIZE_ORDER.index(b.size):
            assert ra < rb, (a.size, ra, b.size, rb)
        elif SIZE_ORDER.index(a.size) > SIZE_ORDER.index(b.size):
            assert ra > rb, (a.size, ra, b.size, rb)
    if min(width, height) >= 96:  # the primary category's copies always find room
        copies = sum(s.category.id == scene.shapes[0].category.id for s in scene.shapes)
        assert copies == level + 1 if level < 3 else 4 <= copies <= 6


def test_primary_copies_find_room_where_random_tries_miss(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(scenes, "_place", lambda *args: None)  # every random try misses
    scene = make_scene(np.random.default_rng(0), (96, 96), 2, None)
    # the other shapes are dropped; the level's three copies are not
    assert [s.category for s in scene.shapes] == [scene.shapes[0].category] * 3
    assert {s.size for s in scene.shapes} == {"small"}


@pytest.mark.parametrize("size", [(96, 96), (128, 128)])
def test_small_images_hold_exact_separate_visible_masks(tmp_path: Path, size: tuple[int, int]) -> None:
    tree = make_refer_dataset(tmp_path / "t", 40, 0, image_size=size, datasets=("refcoco",))
    instances = json.loads((tree.data_dir("refcoco") / "instances.json").read_text())
    measured = measure(tree, instances)
    told = [m for m in measured.values() if m.colour is not None]
    assert len(told) >= 0.75 * len(measured)  # the rest: rings and stars too thin for a 2-px core
    for m in told:
        assert m.core_match >= 0.95 and m.rim_match <= 0.1, (m.ann["id"], m.core_match, m.rim_match)
    by_image: dict[int, list[np.ndarray]] = {}
    for m in measured.values():
        ys, xs = np.nonzero(m.mask)
        # the farthest pixel from the centroid: about the radius (every shape is centred there)
        assert np.hypot(xs - xs.mean(), ys - ys.mean()).max() >= MIN_RADIUS - 1.2, m.ann["id"]
        by_image.setdefault(m.ann["image_id"], []).append(morph(m.mask, 2, erode=False))
    for grown in by_image.values():
        assert not np.any(np.sum(grown, axis=0) > 1)  # even grown by 2 px, no two objects touch


def test_object_scale_makes_shapes_larger_and_keeps_them_apart() -> None:
    ratios = []
    for seed, level in itertools.product(range(30), range(4)):
        plain = make_scene(np.random.default_rng(seed), (160, 120), level, None)
        larger = make_scene(np.random.default_rng(seed), (160, 120), level, None, object_scale=1.5)
        ratios.append(np.mean(radii(larger)) / np.mean(radii(plain)))
        # crowded scenes fall back to smaller sizes, but shapes never touch
        for (x1, y1, r1), (x2, y2, r2) in itertools.combinations(
            [(s.cx, s.cy, r) for s, r in zip(larger.shapes, radii(larger))], 2
        ):
            assert np.hypot(x1 - x2, y1 - y2) > r1 + r2
    assert np.median(ratios) > 1.3, np.median(ratios)


def test_object_scale_is_validated(tmp_path: Path) -> None:
    for bad in (0.2, 3, float("nan"), "big"):
        with pytest.raises(ValueError, match="object_scale"):
            make_refer_dataset(tmp_path / "tree", 12, object_scale=bad)
