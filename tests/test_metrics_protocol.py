"""Evaluation protocol helpers: logits → mask at the original size, difficulty groups."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from nemo_hf.metrics import distractor_group, group_labels, logits_to_mask, logits_to_masks, size_group

torch.set_num_threads(1)


def bilinear_half_pixel(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear resize with half-pixel centres, source coordinates clamped to the image, in float64 loops."""
    in_h, in_w = image.shape

    def taps(out_index: int, in_size: int, out_size: int) -> tuple[int, int, float]:
        src = min(max((out_index + 0.5) * in_size / out_size - 0.5, 0.0), in_size - 1)
        low = math.floor(src)
        return low, min(low + 1, in_size - 1), src - low

    out = np.empty((height, width))
    for y in range(height):
        y0, y1, wy = taps(y, in_h, height)
        for x in range(width):
            x0, x1, wx = taps(x, in_w, width)
            top = image[y0, x0] * (1 - wx) + image[y0, x1] * wx
            bottom = image[y1, x0] * (1 - wx) + image[y1, x1] * wx
            out[y, x] = top * (1 - wy) + bottom * wy
    return out


@pytest.mark.parametrize(("small", "size"), [((5, 7), (13, 9)), ((8, 8), (3, 20)), ((4, 6), (4, 6))])
def test_logits_are_upsampled_bilinearly_then_thresholded_at_probability_half(small, size):
    rng = np.random.default_rng(0)
    logits = rng.normal(size=small).astype(np.float32)
    upsampled = bilinear_half_pixel(logits.astype(np.float64), *size)
    mask = logits_to_mask(torch.from_numpy(logits), size)
    assert mask.dtype == torch.bool and tuple(mask.shape) == size
    decided = np.abs(upsampled) > 1e-4  # float32 rounding may flip pixels sitting on the boundary
    assert decided.mean() > 0.95
    np.testing.assert_array_equal(mask.numpy()[decided], (upsampled > 0)[decided])


def test_threshold_is_a_probability_applied_after_sigmoid():
    logits = torch.linspace(-4, 4, 81).reshape(1, 81)
    mask = logits_to_mask(logits, (1, 81), threshold=0.9)
    np.testing.assert_array_equal(mask.numpy(), (logits > math.log(0.9 / 0.1)).numpy())
    with pytest.raises(ValueError, match="probability"):
        logits_to_mask(logits, (1, 81), threshold=0.0)


def test_numpy_in_numpy_out_and_batches_keep_their_axis():
    logits = np.random.default_rng(1).normal(size=(3, 4, 4)).astype(np.float16)
    masks = logits_to_mask(logits, (6, 5))
    assert isinstance(masks, np.ndarray) and masks.dtype == np.bool_ and masks.shape == (3, 6, 5)
    for i in range(3):
        np.testing.assert_array_equal(masks[i], logits_to_mask(logits[i], (6, 5)))


def test_logits_to_masks_gives_each_sample_its_own_size():
    logits = torch.randn(2, 4, 4, generator=torch.Generator().manual_seed(0))
    masks = logits_to_masks(logits, [(3, 5), (7, 2)])
    assert [tuple(m.shape) for m in masks] == [(3, 5), (7, 2)]
    assert torch.equal(masks[1], logits_to_mask(logits[1], (7, 2)))
    with pytest.raises(ValueError, match="2 logit maps but 1"):
        logits_to_masks(logits, [(3, 5)])


@pytest.mark.parametrize(
    ("logits", "size", "match"),
    [
        (torch.zeros(4, 4, dtype=torch.int64), (2, 2), "float"),
        (torch.zeros(1, 1, 4, 4), (2, 2), "shape"),
        (torch.zeros(4, 4), (0, 2), "positive"),
        (torch.zeros(4, 4), (2,), "height, width"),
    ],
)
def test_bad_logits_or_sizes_are_refused(logits, size, match):
    with pytest.raises(ValueError, match=match):
        logits_to_mask(logits, size)


def test_distractor_groups():
    assert [distractor_group(n) for n in range(6)] == ["0", "1", "2", "3+", "3+", "3+"]
    assert distractor_group(np.int64(2)) == "2"
    for bad in (-1, 1.5, True):
        with pytest.raises(ValueError, match="distractors"):
            distractor_group(bad)


def test_size_groups_use_coco_area_bins():
    assert [size_group(a) for a in (0, 32 * 32 - 1, 32 * 32, 96 * 96 - 1, 96 * 96, 10**7)] == [
        "small",
        "small",
        "medium",
        "medium",
        "large",
        "large",
    ]
    with pytest.raises(ValueError, match="mask_area"):
        size_group(-3)


def test_group_labels():
    assert group_labels(distractors=2, mask_area=5000) == ["distractors=2", "size=medium"]
    assert group_labels(distractors=0) == ["distractors=0"]
    assert group_labels() == []
