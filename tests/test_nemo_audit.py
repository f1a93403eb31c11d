"""The mosaic audit on hand-built mosaics whose answers are worked out on paper.

Canvas 200 px, 2×2 even grid: cells are 100 px squares, and source frames of 100×100
land unscaled, so a centre (x, y) of the image in cell 1 sits at (100 + x, y).
"""

from __future__ import annotations

import math

import datasets
import pytest

from nemo_hf.data.meaning import SceneObject, make_landmark, make_meaning
from nemo_hf.mosaic import Box
from nemo_hf.nemo.audit import GroundTruth, MosaicAudit, TargetTruth, audit_mosaics, objects_in_cell, target_sizes

FRAME = (100.0, 100.0)
RING_LEFT = make_meaning(category="ring", column="left")


def ring(colour: str, x: float, y: float = 50.0, size: str = "small") -> SceneObject:
    return SceneObject("ring", colour, size, x, y)


def truth(meaning: dict, images: dict[int, list[SceneObject]], target=("ring", "red")) -> GroundTruth:
    return GroundTruth(
        meanings={1: meaning},
        targets={5: TargetTruth(target[0], target[1], (0.0, 0.0, 10.0, 10.0), FRAME)},
        frames={image_id: (tuple(objects), FRAME) for image_id, objects in images.items()},
    )


def audit(meaning: dict, images: dict, cells: list[int], target_cell: int, **kwargs) -> MosaicAudit:
    rows = {"sent_id": [1], "ref_id": [5], "source_image_ids": [cells], "target_cell": [target_cell],
            "mosaic_kind": ["mined"]}  # fmt: skip
    return audit_mosaics(rows, truth(meaning, images, **kwargs), size=200)


EMPTY = 9  # an image with nothing in it


@pytest.mark.parametrize(
    ("negative", "cell", "false_negative"),
    [
        (ring("blue", 80), 2, False),  # own right third, left column: x = 80 of 200, the middle third
        (ring("blue", 40), 2, True),  # own middle, left column: x = 40, the left third
        (ring("blue", 10), 1, False),  # right column: x = 110, never left
        (SceneObject("star", "blue", "small", 10, 50), 2, False),  # left, but not a ring
    ],
)
def test_columns_are_read_across_the_canvas(negative: SceneObject, cell: int, false_negative: bool) -> None:
    images = {10: [ring("red", 20)], 11: [negative], EMPTY: []}
    cells = [10, EMPTY, EMPTY, EMPTY]
    cells[cell] = 11
    result = audit(RING_LEFT, images, cells, 0)
    assert (result.mosaics, result.false_negative) == (1, int(false_negative))
    assert result.same_category == int(negative.category == "ring")
    assert result.same_category_colour == 0  # blue is not the target's red


def test_a_landmark_in_another_cell_makes_a_relation_hold() -> None:
    star = make_landmark(category="star")
    left_of_star = make_meaning(category="ring", relation={"direction": "left", "landmark": star})
    target_image = [ring("red", 20), SceneObject("star", "green", "small", 80, 50)]
    images = {10: target_image, 11: [ring("red", 50)], EMPTY: []}
    # the negative's ring (50, 50) is left of the target's star (180, 50), one cell over
    result = audit(left_of_star, images, [11, 10, EMPTY, EMPTY], 1)
    assert (result.false_negative, result.same_category, result.same_category_colour) == (1, 1, 1)
    # below it, at (50, 150): the star is up and to the right, no axis dominates
    assert audit(left_of_star, images, [EMPTY, 10, 11, EMPTY], 1).false_negative == 0


def test_extremes_compete_across_cells() -> None:
    leftmost = make_meaning(category="ring", extreme="leftmost")
    images = {10: [ring("red", 20)], 11: [ring("blue", 20)], EMPTY: []}
    assert audit(leftmost, images, [11, 10, EMPTY, EMPTY], 1).false_negative == 1  # 20 beats 120
    assert audit(leftmost, images, [10, 11, EMPTY, EMPTY], 0).false_negative == 0
    # within 3% of the canvas (6 px) nobody is leftmost: no wrong label, though the target lost its own
    images[11] = [ring("blue", 25)]
    assert audit(leftmost, images, [10, EMPTY, 11, EMPTY], 0).false_negative == 0


def test_look_alikes_are_counted_even_when_the_expression_excludes_them() -> None:
    big_red_ring = make_meaning(category="ring", colour="red", size="large")
    images = {10: [ring("red", 20, size="large")], 11: [ring("red", 20, size="small")], EMPTY: []}
    result = audit(big_red_ring, images, [10, 11, EMPTY, EMPTY], 0)
    assert (result.false_negative, result.same_category, result.same_category_colour) == (0, 1, 1)
    # objects in the target's own cell are never counted against it
    images[10] = [ring("red", 20, size="large"), ring("red", 70, size="large")]
    assert audit(big_red_ring, images, [10, EMPTY, EMPTY, EMPTY], 0) == MosaicAudit(1, 0, 0, 0)


def test_single_images_are_skipped_and_grids_are_inferred() -> None:
    images = {10: [ring("red", 20)], 11: [ring("blue", 10)], EMPTY: []}
    nine = [10] + [EMPTY] * 8
    nine[3] = 11  # row 1, column 0 of a 3×3 grid: x = 10 * 67/100 → the left third
    rows = {"sent_id": [1, 1, 1], "ref_id": [5, 5, 5], "source_image_ids": [[10], nine, [10, 11, EMPTY, EMPTY]],
            "target_cell": [0, 0, 0], "mosaic_kind": ["single", "mined", "random"]}  # fmt: skip
    result = audit_mosaics(rows, truth(RING_LEFT, images), size=200)
    assert (result.mosaics, result.false_negative) == (2, 1)
    assert result.shares() == {"false_negative": 0.5, "same_category": 1.0, "same_category_colour": 0.0}
    assert all(math.isnan(v) for v in MosaicAudit(0, 0, 0, 0).shares().values())


def test_cross_points_move_the_cells() -> None:
    images = {10: [ring("red", 20)], 11: [ring("blue", 80)], EMPTY: []}
    # cells split at x = 40: the negative's ring in cell 2 lands at 0.8 * 40 = 32, the left third
    result = audit_mosaics(
        {"sent_id": [1], "ref_id": [5], "source_image_ids": [[10, EMPTY, 11, EMPTY]], "target_cell": [0]},
        truth(RING_LEFT, images), size=200, cross_points=[(0.2, 0.5)],
    )  # fmt: skip
    assert result.false_negative == 1


def test_letterboxed_cells_keep_the_aspect_ratio() -> None:
    wide = ((SceneObject("ring", "red", "small", 0.0, 0.0), SceneObject("ring", "red", "small", 200.0, 100.0)),
            (200.0, 100.0))  # fmt: skip
    placed = objects_in_cell(wide, Box(100, 0, 200, 100), "letterbox")
    assert [(o.x, o.y) for o in placed] == [(100.0, 25.0), (200.0, 75.0)]
    stretched = objects_in_cell(wide, Box(100, 0, 200, 100), "stretch")
    assert [(o.x, o.y) for o in stretched] == [(100.0, 0.0), (200.0, 100.0)]


def test_missing_truth_is_named() -> None:
    rows = {"sent_id": [1], "ref_id": [5], "source_image_ids": [[10, 12, EMPTY, EMPTY]], "target_cell": [0]}
    with pytest.raises(ValueError, match="image 12"):
        audit_mosaics(rows, truth(RING_LEFT, {10: [], EMPTY: []}), size=200)
    with pytest.raises(ValueError, match="sent_id 2"):
        audit_mosaics({**rows, "sent_id": [2]}, truth(RING_LEFT, {10: [], EMPTY: []}), size=200)
    with pytest.raises(ValueError, match="target_cell"):
        audit_mosaics({k: v for k, v in rows.items() if k != "target_cell"}, truth(RING_LEFT, {}), size=200)


def test_target_sizes_in_cells_and_patches() -> None:
    targets = {1: TargetTruth("ring", None, (0, 0, 40, 10), (200, 100)),  # 40 px wide in a 200 px image
               2: TargetTruth("ring", None, (0, 0, 10, 30), (100, 100))}  # fmt: skip
    gt = GroundTruth({}, targets, {})
    rows = {"ref_id": [1, 2, 2], "target_cell": [0, 0, 3], "source_image_ids": [[7], [8], [6, 6, 6, 8]]}
    # single 200 px canvas: 40 * 200/200 = 40 and 30 * 2 = 60; 2×2 cell of 100 px: 30 * 1 = 30
    assert target_sizes(rows, gt, size=200, patch_size=32) == target_sizes(datasets.Dataset.from_dict(rows), gt,
                                                                           size=200, patch_size=32)  # fmt: skip
    sizes = target_sizes(rows, gt, size=200, patch_size=32)
    assert (sizes.count, sizes.median_px, sizes.below_patch) == (3, 40.0, pytest.approx(1 / 3))
    # letterboxed, the 200×100 image fills the 200 px canvas across: 40 px stays 40 px
    first = {k: v[:1] for k, v in rows.items()}
    assert target_sizes(first, gt, size=200, patch_size=32, resize="letterbox").median_px == 40.0
