"""The papers' evaluation protocols (nemo_hf.metrics.protocols), each against a computation by hand.

Every expected number below is worked out in the comment beside it from the protocol's
definition as its code base writes it (CRIS.pytorch's engine.py, LAVT-RIS's test.py), not
from this project's code.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nemo_hf.metrics import IoURules, RISMetrics
from nemo_hf.metrics.protocols import CRIS, LAVT, NEMO_HF, protocol
from nemo_hf.metrics.ris import summarise


def test_cris_warps_probabilities_as_warp_affine_does_with_its_cubic_kernel() -> None:
    # probabilities [0, 0, 1, 1] (logits of ±30) on a 4-pixel input, to an 8-pixel original: pixel x reads input
    # position u = x * 4 / 8 = x / 2, cubic with a = -0.75 and zeros outside. Half-way between two pixels the
    # kernel weighs the near pair 0.59375 and the far pair -0.09375: x=1 reads [0,0,0,1] -> -0.09375; x=3 reads
    # [0,0,1,1] -> 0.5; x=7 reads [1,1,0,0] -> 0.5; whole positions read their pixel. Above 0.35: x >= 3.
    logits = torch.tensor([[[-30.0, -30.0, 30.0, 30.0]]])
    [mask] = CRIS.prediction_masks(logits, [(1, 8)])
    assert mask.int().tolist() == [[0, 0, 0, 1, 1, 1, 1, 1]]
    # nemo_hf's bilinear, half-pixel aligned: pixel x reads (x + 0.5) / 2 - 0.5, so x = 3 reads 1.25: logit
    # -30 + 0.25 * 60 < 0
    [ours] = NEMO_HF.prediction_masks(logits, [(1, 8)])
    assert ours.int().tolist() == [[0, 0, 0, 0, 1, 1, 1, 1]]


def test_cris_thresholds_probabilities_at_0_35_after_upsampling_to_the_input_size() -> None:
    # a constant probability of 0.4 stays 0.4 through both cubic steps (a constant is interpolated exactly inside the
    # input): CRIS marks every pixel (0.4 > 0.35), nemo_hf none (0.4 < 0.5)
    logit = float(np.log(0.4 / 0.6))
    logits = torch.full((1, 2, 2), logit)
    [cris] = CRIS.prediction_masks(logits, [(3, 3)], input_size=(4, 4))
    [ours] = NEMO_HF.prediction_masks(logits, [(3, 3)])
    assert cris.all() and not ours.any()


def test_cris_reports_miou_with_its_epsilon_and_strict_float32_precision() -> None:
    # (I, U) = (1, 2) and (0, 0): CRIS's IoUs are 1 / (2 + 1e-6) and 0 / 1e-6 = 0; nemo_hf's 0.5 and 1
    assert summarise([1, 0], [2, 0], (0.5,), CRIS.iou)["mean_iou"] == pytest.approx((1 / (2 + 1e-6)) / 2, abs=1e-15)
    assert summarise([1, 0], [2, 0], (0.5,), NEMO_HF.iou)["mean_iou"] == 0.75
    # IoU 0.7 (I/U = 70000/100000, less 7e-13 from the epsilon) clears float32 0.7 = 0.69999998808 (and 0.6); IoU 0.6
    # does not clear float32 0.6 = 0.60000002384. nemo_hf counts IoU >= X: both sentences at 0.6.
    for rules, expected in ((CRIS.iou, {"precision@0.6": 0.5, "precision@0.7": 0.5}),
                            (NEMO_HF.iou, {"precision@0.6": 1.0, "precision@0.7": 0.5})):
        result = summarise([70000, 60000], [100000, 100000], (0.6, 0.7), rules)
        assert {k: result[k] for k in expected} == expected
    assert CRIS.reported_as == {"IoU": "mean_iou"}


def test_lavt_scores_at_480_against_a_nearest_resized_ground_truth() -> None:
    # logits [-1, 1] -> 480 wide, bilinear with align_corners: -1 + 2x / 479 > 0 for x >= 240, so columns 240..479.
    # ground truth [0, 0, 1] (3 x 3) -> 480 by PIL's nearest: column X reads floor((X + 0.5) * 3 / 480) = 2 for
    # X >= 320. IoU = 160 / 240 = 2/3. nemo_hf at 3 x 3: x reads (x + 0.5) * 2/3 - 0.5 = -1/6, 1/2, 7/6 -> logits
    # -1, 0, 1 -> [0, 0, 1] (a logit of 0 is not above 0.5): IoU 1.
    logits = torch.tensor([[[-1.0, 1.0]]])
    truth = torch.tensor([[False, False, True]] * 3)
    [prediction] = LAVT.prediction_masks(logits, [(3, 3)])
    target = LAVT.target(truth)
    assert prediction.shape == target.shape == (480, 480)
    assert prediction[0].nonzero().flatten().tolist() == list(range(240, 480))
    assert target[0].nonzero().flatten().tolist() == list(range(320, 480))
    metrics = RISMetrics(rules=LAVT.iou)
    metrics.update([prediction], [target])
    assert metrics.compute()["mean_iou"] == pytest.approx(2 / 3)
    [ours] = NEMO_HF.prediction_masks(logits, [(3, 3)])
    assert ours.int().tolist() == truth.int().tolist()
    assert NEMO_HF.target(truth) is truth and LAVT.score_size((2, 7)) == (480, 480)


def test_lavt_s_nearest_resize_keeps_whole_pixels_when_it_shrinks() -> None:
    # one-pixel stripes at every 5th column of a 600-wide mask, shrunk to 480: column X reads source column
    # floor((X + 0.5) * 600 / 480) = floor(1.25 X + 0.625), which is a multiple of 5 exactly when X is a multiple of 4
    truth = torch.zeros(600, 600, dtype=torch.bool)
    truth[:, ::5] = True
    assert LAVT.target(truth)[0].nonzero().flatten().tolist() == list(range(0, 480, 4))


def test_an_empty_union_scores_one_here_and_zero_in_the_papers_code() -> None:
    for name, expected in (("nemo_hf", 1.0), ("cris", 0.0), ("lavt", 0.0)):
        rules = protocol(name).iou
        assert rules.iou(0, 0) == expected
        assert summarise([0], [0], (0.5,), rules)["overall_iou"] == expected


def test_instance_masks_follow_the_ground_truth_into_lavt_s_frame() -> None:
    planes = torch.zeros(2, 3, 3, dtype=torch.bool)
    planes[0, :, 2] = True
    assert LAVT.target(planes).shape == (2, 480, 480)
    assert torch.equal(LAVT.target(planes)[0], LAVT.target(planes[0]))


def test_rules_and_names_are_checked() -> None:
    with pytest.raises(ValueError, match="'>=' or '>'"):
        IoURules(precision_comparison="=>")
    with pytest.raises(ValueError, match="choose one of 'nemo_hf', 'cris', 'lavt'"):
        protocol("mattnet")
