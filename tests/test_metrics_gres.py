"""GRESMetrics (gRefCOCO cIoU, gIoU, N-acc, T-acc) against the definitions, computed from the masks."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from nemo_hf.metrics import GRESMetrics, RISMetrics

torch.set_num_threads(1)


@st.composite
def gres_samples(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray, bool]:
    """(prediction, ground truth, no-target head's call); ground truth empty a third of the time."""
    shape = (draw(st.integers(1, 6)), draw(st.integers(1, 6)))
    empty = np.zeros(shape, dtype=bool)
    pred = draw(st.one_of(st.just(empty), arrays(np.bool_, shape)))
    gt = draw(st.one_of(st.just(empty), arrays(np.bool_, shape), arrays(np.bool_, shape)))
    return pred, gt, draw(st.booleans())


def reference_gres(samples, empty_below: int = 1, use_flags: bool = False) -> dict[str, float]:
    """The GRES definitions, with a sample called empty scored as an all-background mask."""
    inter_sum = union_sum = 0
    scores: list[Fraction] = []
    target_ious: list[Fraction] = []
    no_target_calls: list[bool] = []
    target_calls: list[bool] = []
    for pred, gt, flag in samples:
        called_empty = flag if use_flags else int(pred.sum()) < empty_below
        shown = np.zeros_like(pred) if called_empty else pred
        inter, union = int((shown & gt).sum()), int((shown | gt).sum())
        inter_sum, union_sum = inter_sum + inter, union_sum + union
        if gt.any():
            target_ious.append(Fraction(inter, union))
            scores.append(target_ious[-1])
            target_calls.append(not called_empty)
        else:
            scores.append(Fraction(int(called_empty)))
            no_target_calls.append(called_empty)

    def share(hits: list[bool]) -> float:
        return sum(hits) / len(hits) if hits else math.nan

    ref = {
        "ciou": float(Fraction(inter_sum, union_sum)) if union_sum else 1.0,
        "giou": float(sum(scores, Fraction(0)) / len(scores)),
        "n_acc": share(no_target_calls),
        "t_acc": share(target_calls),
        "count": len(samples),
        "no_target_count": len(no_target_calls),
    }
    for t in (0.7, 0.8, 0.9):
        ref[f"precision@{t:g}"] = share([iou >= Fraction(str(t)) for iou in target_ious])
    return ref


def gres_of(samples, use_flags: bool = False, **kwargs) -> dict:
    metrics = GRESMetrics(**kwargs)
    flags = [flag for _, _, flag in samples] if use_flags else None
    metrics.update([p for p, _, _ in samples], [g for _, g, _ in samples], pred_no_target=flags)
    return metrics.compute()


def assert_matches(result: dict, ref: dict) -> None:
    assert result.keys() == ref.keys()
    for key, expected in ref.items():
        if isinstance(expected, float) and math.isnan(expected):
            assert math.isnan(result[key]), key
        else:
            assert result[key] == pytest.approx(expected, rel=1e-12, abs=1e-15), key


@settings(max_examples=60, deadline=None)
@given(st.lists(gres_samples(), min_size=1, max_size=12), st.integers(1, 5), st.booleans())
def test_gres_metrics_match_the_definitions(samples, empty_below, use_flags):
    result = gres_of(samples, use_flags=use_flags, empty_below=empty_below)
    assert_matches(result, reference_gres(samples, empty_below=empty_below, use_flags=use_flags))


@settings(max_examples=40, deadline=None)
@given(st.lists(gres_samples(), min_size=1, max_size=12))
def test_ciou_and_giou_equal_ris_oiou_and_miou_with_the_default_empty_rule(samples):
    result = gres_of(samples)
    ris = RISMetrics()
    ris.update([p for p, _, _ in samples], [g for _, g, _ in samples])
    ris_result = ris.compute()
    assert result["ciou"] == ris_result["overall_iou"]
    assert result["giou"] == ris_result["mean_iou"]


def test_hand_computed_case():
    target = np.zeros((2, 4), dtype=bool)
    target[0] = True  # 4 pixels
    pred_half = np.zeros((2, 4), dtype=bool)
    pred_half[0, :2] = True  # IoU 0.5
    empty = np.zeros((2, 4), dtype=bool)
    stray = np.zeros((2, 4), dtype=bool)
    stray[1, 3] = True
    result = gres_of([(pred_half, target, False), (empty, empty, False), (stray, empty, False), (empty, target, False)])
    assert result["ciou"] == 2 / (4 + 0 + 1 + 4)
    assert result["giou"] == (0.5 + 1 + 0 + 0) / 4
    assert result["n_acc"] == 0.5
    assert result["t_acc"] == 0.5
    assert result["precision@0.7"] == 0.0
    assert (result["count"], result["no_target_count"]) == (4, 2)


def test_shares_without_samples_to_count_are_nan():
    gt = np.ones((1, 2, 2), dtype=bool)
    only_targets = GRESMetrics()
    only_targets.update(gt, gt)
    assert math.isnan(only_targets.compute()["n_acc"])
    only_no_target = GRESMetrics()
    only_no_target.update(~gt, ~gt)
    result = only_no_target.compute()
    assert math.isnan(result["t_acc"]) and math.isnan(result["precision@0.9"])
    assert result["ciou"] == result["giou"] == result["n_acc"] == 1.0


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="empty_below"):
        GRESMetrics(empty_below=0)
    metrics = GRESMetrics()
    mask = np.ones((2, 2, 2), dtype=bool)
    with pytest.raises(ValueError, match="1 pred_no_target flags for 2 samples"):
        metrics.update(mask, mask, pred_no_target=[True])
    with pytest.raises(ValueError, match="sample 0"):
        metrics.update_counts([3], [2], [5])
    with pytest.raises(ValueError, match="no samples"):
        metrics.compute()
