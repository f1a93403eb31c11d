"""RISMetrics and pixel_counts against independent computations on random masks."""

from __future__ import annotations

import random
from fractions import Fraction

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from pycocotools import mask as mask_utils

from nemo_hf.metrics import RISMetrics, pixel_counts, sentence_iou

torch.set_num_threads(1)

THRESHOLDS = (0.5, 0.6, 0.7, 0.8, 0.9)


@st.composite
def mask_pairs(draw: st.DrawFn, max_side: int = 6) -> tuple[np.ndarray, np.ndarray]:
    """A (prediction, ground truth) pair of one random shape; each mask empty, full or random."""
    shape = (draw(st.integers(1, max_side)), draw(st.integers(1, max_side)))
    masks = st.one_of(
        st.just(np.zeros(shape, dtype=bool)), st.just(np.ones(shape, dtype=bool)), arrays(np.bool_, shape)
    )
    return draw(masks), draw(masks)


pair_lists = st.lists(mask_pairs(), min_size=1, max_size=12)


def loop_counts(pred: np.ndarray, gt: np.ndarray) -> tuple[int, int]:
    """Intersection and union by visiting every pixel."""
    inter = union = 0
    for pred_row, gt_row in zip(pred.tolist(), gt.tolist()):
        for p, g in zip(pred_row, gt_row):
            inter += p and g
            union += p or g
    return inter, union


def reference_metrics(pairs: list[tuple[np.ndarray, np.ndarray]]) -> dict[str, Fraction | int]:
    """The RIS metrics in exact rational arithmetic, empty union scoring IoU 1."""
    counts = [loop_counts(p, g) for p, g in pairs]
    ious = [Fraction(i, u) if u else Fraction(1) for i, u in counts]
    total_union = sum(u for _, u in counts)
    ref: dict[str, Fraction | int] = {
        "overall_iou": Fraction(sum(i for i, _ in counts), total_union) if total_union else Fraction(1),
        "mean_iou": sum(ious, Fraction(0)) / len(ious),
        "count": len(ious),
    }
    for t in THRESHOLDS:
        ref[f"precision@{t:g}"] = Fraction(sum(iou >= Fraction(str(t)) for iou in ious), len(ious))
    return ref


def metrics_of(pairs: list[tuple[np.ndarray, np.ndarray]], **kwargs) -> dict:
    metrics = RISMetrics(**kwargs)
    metrics.update([p for p, _ in pairs], [g for _, g in pairs])
    return metrics.compute()


@settings(max_examples=60, deadline=None)
@given(pair_lists)
def test_pixel_counts_match_pixel_loops(pairs):
    counts = pixel_counts([p for p, _ in pairs], [g for _, g in pairs])
    expected = [loop_counts(p, g) for p, g in pairs]
    assert counts.intersection.dtype == np.int64
    assert list(zip(counts.intersection.tolist(), counts.union.tolist())) == expected
    assert counts.pred_area.tolist() == [int(p.sum()) for p, _ in pairs]
    assert counts.target_area.tolist() == [int(g.sum()) for _, g in pairs]


@settings(max_examples=60, deadline=None)
@given(pair_lists)
def test_metrics_match_exact_reference(pairs):
    result = metrics_of(pairs)
    ref = reference_metrics(pairs)
    assert result["count"] == ref["count"]
    assert result["overall_iou"] == float(ref["overall_iou"])
    assert result["mean_iou"] == pytest.approx(float(ref["mean_iou"]), rel=1e-12, abs=1e-15)
    for t in THRESHOLDS:
        key = f"precision@{t:g}"
        assert result[key] == float(ref[key]), key
    assert result["groups"] == {}


def test_iou_matches_pycocotools_on_rle():
    rng = np.random.default_rng(0)
    checked = 0
    for _ in range(40):
        shape = tuple(rng.integers(1, 40, size=2))
        pred, gt = rng.random(shape) < rng.random(), rng.random(shape) < rng.random()
        counts = pixel_counts([pred], [gt])
        union = int(counts.union[0])
        if union == 0:  # pycocotools scores an empty union 0; the convention here is 1
            continue
        rles = [mask_utils.encode(np.asfortranarray(m.astype(np.uint8))) for m in (pred, gt)]
        coco_iou = mask_utils.iou([rles[0]], [rles[1]], [0])[0, 0]
        assert sentence_iou(int(counts.intersection[0]), union) == pytest.approx(coco_iou, rel=1e-12)
        checked += 1
    assert checked >= 35


def test_empty_union_scores_one_and_adds_nothing_to_the_sums():
    empty, dot = np.zeros((3, 3), dtype=bool), np.zeros((3, 3), dtype=bool)
    dot[0, 0] = True
    half_pred, half_gt = np.zeros((2, 2), dtype=bool), np.zeros((2, 2), dtype=bool)
    half_pred[0] = True
    half_gt[:, 0] = True  # intersection 1, union 3
    result = metrics_of([(empty, empty), (half_pred, half_gt), (empty, dot), (dot, empty)])
    assert result["overall_iou"] == 1 / 5  # (0 + 1 + 0 + 0) / (0 + 3 + 1 + 1)
    assert result["mean_iou"] == pytest.approx((1 + 1 / 3 + 0 + 0) / 4)
    assert result["precision@0.5"] == 1 / 4
    only_empty = metrics_of([(empty, empty), (half_gt[:0], half_gt[:0])])
    assert only_empty["overall_iou"] == only_empty["mean_iou"] == only_empty["precision@0.9"] == 1.0


def test_precision_counts_iou_equal_to_the_threshold():
    pred, gt = np.zeros((1, 2), dtype=bool), np.ones((1, 2), dtype=bool)
    pred[0, 0] = True  # IoU exactly 0.5
    result = metrics_of([(pred, gt)], thresholds=(0.5, 0.55))
    assert result["precision@0.5"] == 1.0
    assert result["precision@0.55"] == 0.0
    assert [k for k in result if k.startswith("precision@")] == ["precision@0.5", "precision@0.55"]


@settings(max_examples=40, deadline=None)
@given(pair_lists, st.randoms(use_true_random=False))
def test_overall_iou_in_unit_interval_and_permutation_invariant(pairs, rnd):
    result = metrics_of(pairs)
    assert 0.0 <= result["overall_iou"] <= 1.0
    assert 0.0 <= result["mean_iou"] <= 1.0
    shuffled = list(pairs)
    rnd.shuffle(shuffled)
    assert metrics_of(shuffled) == result


@settings(max_examples=40, deadline=None)
@given(pair_lists, st.data())
def test_update_in_one_batch_equals_update_in_pieces(pairs, data):
    cuts = sorted(data.draw(st.lists(st.integers(0, len(pairs)), max_size=4)))
    pieces = RISMetrics()
    for start, stop in zip([0, *cuts], [*cuts, len(pairs)]):
        pieces.update([p for p, _ in pairs[start:stop]], [g for _, g in pairs[start:stop]])
    assert pieces.compute() == metrics_of(pairs)


def test_groups_equal_metrics_of_their_subsets():
    rng = random.Random(1)
    nprng = np.random.default_rng(1)
    pairs, groups = [], []
    for _ in range(30):
        shape = (rng.randint(1, 9), rng.randint(1, 9))
        pairs.append((nprng.random(shape) < 0.5, nprng.random(shape) < 0.5))
        groups.append([f"distractors={rng.choice('0123')}"] + (["size=small"] if rng.random() < 0.5 else []))
    metrics = RISMetrics()
    metrics.update([p for p, _ in pairs], [g for _, g in pairs], groups=groups)
    result = metrics.compute()
    names = sorted({name for labels in groups for name in labels})
    assert list(result["groups"]) == names
    for name in names:
        subset = [pair for pair, labels in zip(pairs, groups) if name in labels]
        expected = metrics_of(subset)
        del expected["groups"]
        assert result["groups"][name] == expected, name


def test_group_given_as_a_plain_string_is_one_group():
    mask = np.ones((1, 2, 2), dtype=bool)
    metrics = RISMetrics()
    metrics.update(mask, mask, groups=["distractors=3+"])
    assert list(metrics.compute()["groups"]) == ["distractors=3+"]


def test_tensors_arrays_lists_and_0_255_masks_agree():
    gen = torch.Generator().manual_seed(0)
    preds = torch.rand(5, 7, 6, generator=gen) < 0.5
    gts = torch.rand(5, 7, 6, generator=gen) < 0.5
    expected = metrics_of([(p, g) for p, g in zip(preds.numpy(), gts.numpy())])
    variants = [
        (preds, gts),
        (list(preds), list(gts)),
        (preds.numpy(), gts),
        (preds.numpy().astype(np.uint8) * 255, gts.numpy().astype(np.uint8) * 255),
    ]
    for pred_input, gt_input in variants:
        metrics = RISMetrics()
        metrics.update(pred_input, gt_input)
        assert metrics.compute() == expected
    counts = pixel_counts(preds, gts)
    assert isinstance(counts.union, torch.Tensor) and counts.union.dtype == torch.int64


def test_update_counts_equals_update():
    rng = np.random.default_rng(3)
    pairs = [(rng.random((4, 5)) < 0.3, rng.random((4, 5)) < 0.6) for _ in range(8)]
    counts = pixel_counts([p for p, _ in pairs], [g for _, g in pairs])
    metrics = RISMetrics()
    metrics.update_counts(torch.from_numpy(counts.intersection), counts.union.tolist())
    assert metrics.compute() == metrics_of(pairs)


def test_reset_forgets_samples():
    metrics = RISMetrics()
    metrics.update(np.ones((1, 2, 2), dtype=bool), np.zeros((1, 2, 2), dtype=bool))
    metrics.reset()
    metrics.update(np.ones((1, 2, 2), dtype=bool), np.ones((1, 2, 2), dtype=bool))
    assert metrics.compute()["overall_iou"] == 1.0
    assert metrics.compute()["count"] == 1


@pytest.mark.parametrize(
    ("preds", "targets", "error", "match"),
    [
        (np.zeros((1, 2, 2)), np.zeros((1, 2, 2), dtype=bool), TypeError, "logits_to_mask"),
        (np.zeros((2, 2), dtype=bool), np.zeros((2, 2), dtype=bool), ValueError, r"mask\[None\]"),
        ([np.zeros((2, 2), dtype=bool)], [np.zeros((2, 3), dtype=bool)], ValueError, "sample 0"),
        ([np.zeros((2, 2), dtype=bool)], [], ValueError, "1 predictions but 0 targets"),
        ([np.zeros((1, 2, 2), dtype=bool)], [np.zeros((1, 2, 2), dtype=bool)], ValueError, r"preds\[0\]"),
    ],
)
def test_bad_masks_are_refused_with_a_clear_error(preds, targets, error, match):
    with pytest.raises(error, match=match):
        RISMetrics().update(preds, targets)


def test_bad_counts_groups_and_thresholds_are_refused():
    metrics = RISMetrics()
    with pytest.raises(ValueError, match="sample 1"):
        metrics.update_counts([1, 3], [2, 2])
    with pytest.raises(ValueError, match="one entry per sample"):
        metrics.update_counts([1, 1], [2, 2], groups=[["a"]])
    with pytest.raises(ValueError, match="twice"):
        metrics.update_counts([1], [2], groups=[["a", "a"]])
    with pytest.raises(TypeError, match="integers"):
        metrics.update_counts([0.5], [1.0])
    with pytest.raises(ValueError, match="no samples"):
        metrics.compute()
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        RISMetrics(thresholds=(0.5, 1.5))
