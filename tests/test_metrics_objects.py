"""Object accuracy: hand-built cases with known outcomes, and a brute-force check with pycocotools."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from pycocotools import mask as mask_utils

from nemo_hf.metrics import (
    ObjectMetrics,
    RISMetrics,
    instance_overlaps,
    instance_roles,
    object_outcomes,
)
from nemo_hf.metrics.objects import (
    NO_TARGET,
    NONE,
    OTHER_OBJECT,
    OUTCOMES,
    SAME_CATEGORY,
    TARGET,
    choose_object,
)

torch.set_num_threads(1)

H, W = 10, 30


def box(left: int, right: int, top: int = 0, bottom: int = H) -> np.ndarray:
    mask = np.zeros((H, W), dtype=bool)
    mask[top:bottom, left:right] = True
    return mask


# the target, a same-category distractor and an object of another category, side by side
TARGET_MASK, DISTRACTOR_MASK, OTHER_MASK = box(0, 10), box(10, 20), box(20, 30)
INSTANCES = np.stack([TARGET_MASK, DISTRACTOR_MASK, OTHER_MASK])
ROLES = instance_roles(ann_ids=[1, 2, 3], category_ids=[5, 5, 9], target_ann_ids=[1])


def outcome(pred: np.ndarray, instances: np.ndarray = INSTANCES, roles=ROLES, min_iou: float = 0.0) -> int:
    (code,) = object_outcomes([pred], [instances], [roles], min_iou)
    return code


def test_roles_follow_the_targets_categories():
    assert ROLES == [TARGET, SAME_CATEGORY, OTHER_OBJECT]
    # gRefCOCO: two targets of two categories; each category's other objects are distractors
    assert instance_roles([1, 2, 3, 4, 5], [5, 9, 5, 9, 7], target_ann_ids=[1, 2]) == [0, 0, 1, 1, 2]
    assert instance_roles([1, 2], [5, 5], target_ann_ids=[]) == [OTHER_OBJECT] * 2
    with pytest.raises(ValueError, match=r"target ann_id\(s\) \[4\] are not among the image's instances"):
        instance_roles([1, 2], [5, 5], target_ann_ids=[4])
    with pytest.raises(ValueError, match="2 instance ann_ids but 1 category_ids"):
        instance_roles([1, 2], [5], target_ann_ids=[1])


@pytest.mark.parametrize("pred, expected", [
    (TARGET_MASK, TARGET),
    (box(2, 9, 2, 8), TARGET),  # a ragged mask inside the target is still the target
    (DISTRACTOR_MASK, SAME_CATEGORY),
    (OTHER_MASK, OTHER_OBJECT),
    (np.zeros((H, W), dtype=bool), NONE),  # empty prediction
])
def test_hand_built_outcomes(pred, expected):
    assert outcome(pred) == expected


def test_a_prediction_on_unannotated_pixels_chooses_nothing():
    instances = np.stack([box(0, 10), box(20, 30)])
    assert outcome(box(12, 18), instances, [TARGET, SAME_CATEGORY]) == NONE


def test_a_prediction_on_a_distractor_is_wrong_even_with_a_high_iou_to_the_union_of_objects():
    pred = DISTRACTOR_MASK | box(6, 10)  # all of the distractor and 40% of the target
    union_of_objects = TARGET_MASK | DISTRACTOR_MASK
    union_iou = (pred & union_of_objects).sum() / (pred | union_of_objects).sum()
    assert union_iou == pytest.approx(0.7)
    inter, union = instance_overlaps(pred, INSTANCES)
    assert inter.tolist() == [40, 100, 0] and union.tolist() == [200, 140, 240]  # IoUs 0.2, 0.71, 0
    assert outcome(pred) == SAME_CATEGORY
    metrics = ObjectMetrics()
    metrics.update([pred], [INSTANCES], [ROLES])
    result = metrics.compute()
    assert result["object_accuracy"] == 0.0 and result["wrong_object_rate"] == 1.0
    assert result["outcomes"] == {"target": 0.0, "same_category": 1.0, "other_object": 0.0, "none": 0.0}


@pytest.mark.parametrize("roles, expected", [
    ([TARGET, SAME_CATEGORY], SAME_CATEGORY),  # not singled out: the distractor wins the tie
    ([TARGET, OTHER_OBJECT], OTHER_OBJECT),
    ([OTHER_OBJECT, SAME_CATEGORY], SAME_CATEGORY),
    ([TARGET, TARGET], TARGET),  # gRefCOCO: two targets, either is right
])
def test_exact_ties_go_to_the_worst_role(roles, expected):
    roles = [*roles, TARGET]  # a third object, a target the prediction misses, so each case has one
    instances = np.stack([box(0, 10), box(10, 20), box(20, 30)])  # equal areas
    assert outcome(box(0, 20), instances, roles) == expected  # IoU 1/2 with the first two
    # a tie in value with other counts: 2/6 and 3/9 are one IoU
    assert choose_object([2, 3, 0], [6, 9, 7], roles) == expected
    assert choose_object([2, 3, 0], [6, 8, 7], roles) == roles[1]  # 3/8 > 2/6: no tie


def test_ties_are_exact_where_floats_would_round():
    # neighbouring fractions of image-sized counts (c*b - a*d = 1): one double, two IoUs
    a, b, c, d = 89478487, 268435453, 78293676, 234881021
    assert a / b == c / d and Fraction(c, d) > Fraction(a, b)
    assert choose_object([a, c], [b, d], [SAME_CATEGORY, TARGET]) == TARGET
    assert choose_object([c, a], [d, b], [SAME_CATEGORY, TARGET]) == SAME_CATEGORY
    assert choose_object([a, 2 * a], [b, 2 * b], [SAME_CATEGORY, TARGET]) == SAME_CATEGORY  # a true tie


def test_grefcoco_any_target_counts_and_no_target_is_not_scored():
    instances = np.stack([box(0, 10), box(10, 20), box(20, 30)])
    roles = instance_roles([1, 2, 3], [5, 5, 5], target_ann_ids=[1, 3])
    assert outcome(box(20, 30), instances, roles) == TARGET
    assert outcome(box(10, 20), instances, roles) == SAME_CATEGORY
    no_target = instance_roles([1, 2, 3], [5, 5, 5], target_ann_ids=[-1])
    assert outcome(box(10, 20), instances, no_target) == NO_TARGET
    assert outcome(np.zeros((H, W), bool), instances, no_target) == NO_TARGET
    metrics = ObjectMetrics()
    metrics.update([box(20, 30), box(10, 20)], [instances, instances], [roles, no_target])
    result = metrics.compute()
    assert (result["count"], result["no_target_count"], result["object_accuracy"]) == (1, 1, 1.0)


def test_min_iou_turns_weak_choices_into_none():
    pred = box(0, 10, 0, 5) | box(10, 30)  # half of the target and the other two objects
    # IoUs: target 50/250, distractor 100/250, other 100/250: a tie of distractor and other
    assert outcome(pred) == SAME_CATEGORY
    assert outcome(pred, min_iou=0.4) == SAME_CATEGORY  # 0.4 reaches 0.4
    assert outcome(pred, min_iou=0.41) == NONE
    assert outcome(TARGET_MASK, min_iou=1.0) == TARGET
    with pytest.raises(ValueError, match=r"min_iou is an IoU in \[0, 1\]"):
        ObjectMetrics(min_iou=1.5)


def test_images_without_instances_and_bad_inputs():
    assert outcome(TARGET_MASK, np.zeros((0, H, W), bool), []) == NO_TARGET
    assert object_outcomes([TARGET_MASK], [[]], [[]]) == [NO_TARGET]  # an empty list as Arrow gives it
    with pytest.raises(ValueError, match=r"sample 0: need a \(H, W\) prediction and \(K, H, W\) instance masks"):
        object_outcomes([TARGET_MASK[:, :5]], [INSTANCES], [ROLES])
    with pytest.raises(TypeError, match="Threshold probabilities or logits first"):
        object_outcomes([TARGET_MASK.astype(float)], [INSTANCES], [ROLES])
    with pytest.raises(ValueError, match="roles must be TARGET"):
        choose_object([1], [2], [7])
    with pytest.raises(ValueError, match="need 0 <= intersection <= union"):
        choose_object([3], [2], [TARGET])
    metrics = ObjectMetrics()
    with pytest.raises(ValueError, match=r"outcome codes are -1..3, got \[4\]"):
        metrics.update_outcomes([0, 4])
    with pytest.raises(ValueError, match="no samples"):
        metrics.compute()


def test_results_per_group_and_the_counts_route_agree_with_masks():
    preds = [TARGET_MASK, DISTRACTOR_MASK, OTHER_MASK, np.zeros((H, W), bool), box(3, 7)]
    groups = [["distractors=1", "size=small"], ["distractors=1"], ["distractors=0"], ["distractors=0"], ["x"]]
    from_masks = ObjectMetrics()
    from_masks.update(preds, [INSTANCES] * 5, [ROLES] * 5, groups)
    result = from_masks.compute()
    assert result["count"] == 5 and result["no_target_count"] == 0
    assert result["object_accuracy"] == 0.4 and result["wrong_object_rate"] == 0.4
    assert result["outcomes"] == {"target": 0.4, "same_category": 0.2, "other_object": 0.2, "none": 0.2}
    assert math.fsum(result["outcomes"].values()) == 1.0
    assert sorted(result["groups"]) == ["distractors=0", "distractors=1", "size=small", "x"]
    assert result["groups"]["distractors=1"]["outcomes"] == {
        "target": 0.5, "same_category": 0.5, "other_object": 0.0, "none": 0.0}
    assert result["groups"]["x"]["object_accuracy"] == 1.0
    from_counts = ObjectMetrics()
    overlaps = [instance_overlaps(p, INSTANCES) for p in preds]
    from_counts.update_counts([i for i, _ in overlaps], [u for _, u in overlaps], [ROLES] * 5, groups)
    assert from_counts.compute() == result
    # torch tensors give the same
    as_tensors = ObjectMetrics()
    as_tensors.update([torch.from_numpy(p) for p in preds], [torch.from_numpy(INSTANCES)] * 5,
                      [torch.tensor(ROLES)] * 5, groups)
    assert as_tensors.compute() == result


def test_no_scored_sentence_gives_nan_shares():
    metrics = ObjectMetrics()
    metrics.update_outcomes([NO_TARGET, NO_TARGET])
    result = metrics.compute()
    assert result["count"] == 0 and result["no_target_count"] == 2
    assert math.isnan(result["object_accuracy"]) and all(math.isnan(v) for v in result["outcomes"].values())


# -- against an independent computation ------------------------------------------------------


def brute_force_outcome(pred: np.ndarray, instances: list[np.ndarray], roles: list[int], min_iou: float) -> int:
    """The rules in exact fractions, IoUs from pycocotools' areas of RLE merges."""
    if TARGET not in roles:
        return NO_TARGET
    pred_rle = mask_utils.encode(np.asfortranarray(pred.astype(np.uint8)))
    ious = []
    for instance in instances:
        rle = mask_utils.encode(np.asfortranarray(instance.astype(np.uint8)))
        inter = int(mask_utils.area(mask_utils.merge([pred_rle, rle], intersect=True)))
        union = int(mask_utils.area(mask_utils.merge([pred_rle, rle], intersect=False)))
        ious.append(Fraction(inter, union) if union else Fraction(0))
        if union:  # pycocotools' own float IoU agrees
            assert mask_utils.iou([pred_rle], [rle], [0])[0][0] == pytest.approx(float(ious[-1]))
    best = max(ious)
    if best == 0 or best < Fraction(min_iou):
        return NONE
    tied = {role for role, iou in zip(roles, ious) if iou == best}
    return SAME_CATEGORY if SAME_CATEGORY in tied else OTHER_OBJECT if OTHER_OBJECT in tied else TARGET


@st.composite
def sentences(draw: st.DrawFn) -> tuple[np.ndarray, list[np.ndarray], list[int]]:
    """A prediction and 0-5 instances of one random shape, some empty, full or copies of another."""
    shape = (draw(st.integers(1, 7)), draw(st.integers(1, 7)))
    masks = st.one_of(st.just(np.zeros(shape, bool)), st.just(np.ones(shape, bool)), arrays(np.bool_, shape))
    instances = draw(st.lists(masks, max_size=5))
    if len(instances) >= 2 and draw(st.booleans()):
        instances[1] = instances[0].copy()  # ties of equal masks
    roles = draw(st.lists(st.sampled_from([TARGET, SAME_CATEGORY, OTHER_OBJECT]),
                          min_size=len(instances), max_size=len(instances)))
    pred = draw(st.one_of(masks, st.sampled_from(instances) if instances else masks))
    return pred, instances, roles


@settings(max_examples=300, deadline=None)
@given(st.lists(sentences(), min_size=1, max_size=8), st.sampled_from([0.0, 0.25, 0.5, 1.0]))
def test_outcomes_match_a_brute_force_computation(samples, min_iou):
    expected = [brute_force_outcome(pred, instances, roles, min_iou) for pred, instances, roles in samples]
    stacks = [np.stack(instances) if instances else np.zeros((0, *pred.shape), bool) for pred, instances, _ in samples]
    got = object_outcomes([s[0] for s in samples], stacks, [s[2] for s in samples], min_iou)
    assert got == expected
    metrics = ObjectMetrics(min_iou=min_iou)
    metrics.update([s[0] for s in samples], stacks, [s[2] for s in samples])
    result = metrics.compute()
    scored = [code for code in expected if code != NO_TARGET]
    assert result["count"] == len(scored) and result["no_target_count"] == len(expected) - len(scored)
    for code, name in enumerate(OUTCOMES):
        share = Fraction(scored.count(code), len(scored)) if scored else None
        assert result["outcomes"][name] == (float(share) if scored else pytest.approx(math.nan, nan_ok=True))


def test_object_accuracy_differs_from_oiou_where_it_should():
    """Boundary errors lower oIoU and leave object accuracy alone; a wrong object lowers both."""
    ragged = [box(1, 9, 1, 9)] * 3  # inside the target, IoU 0.64
    wrong = [DISTRACTOR_MASK] + [TARGET_MASK] * 2
    for preds, accuracy in ((ragged, 1.0), (wrong, 2 / 3)):
        ris, objects = RISMetrics(), ObjectMetrics()
        ris.update(preds, [TARGET_MASK] * 3)
        objects.update(preds, [INSTANCES] * 3, [ROLES] * 3)
        assert objects.compute()["object_accuracy"] == pytest.approx(accuracy)
        assert ris.compute()["overall_iou"] < 1.0
