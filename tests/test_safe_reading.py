"""The restricted unpickler and mask decoding, checked against plain pickle and pycocotools."""

from __future__ import annotations

import io
import os
import pickle

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pycocotools import mask as mask_utils

from PIL import Image

from nemo_hf.data.masks import MaskRuns, _rle_counts_of_many, segmentation_to_mask, segmentation_to_rle
from nemo_hf.data.safe_pickle import UnsafePickleError, load_plain_pickle_bytes

plain_data = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=5), children, max_size=4)
    | st.tuples(children, children),
    max_leaves=20,
)


@given(plain_data, st.integers(0, pickle.HIGHEST_PROTOCOL))
def test_plain_data_round_trips_like_pickle(value, protocol):
    data = pickle.dumps(value, protocol=protocol)
    assert load_plain_pickle_bytes(data) == pickle.loads(data)


def test_sets_are_plain_data():
    assert load_plain_pickle_bytes(pickle.dumps({"ids": {1, 2}}, protocol=2)) == {"ids": {1, 2}}


class _Exploit:
    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_code_executing_pickle_is_refused_and_runs_nothing(tmp_path):
    marker = tmp_path / "pwned"
    data = pickle.dumps([{"ref_id": 1, "x": _Exploit(str(marker))}], protocol=2)
    with pytest.raises(UnsafePickleError, match="refused to load posix.system"):
        load_plain_pickle_bytes(data)
    assert not marker.exists()
    # the same bytes really do run code under the standard unpickler (the test would be void otherwise)
    pickle.loads(data)
    assert marker.exists()


def test_python2_byte_strings_fall_back_to_latin1():
    # PROTO 2, EMPTY_LIST, SHORT_BINSTRING b"caf\xe9", APPEND, STOP — what Python 2 writes for 'café'
    python2_pickle = b"\x80\x02]U\x04caf\xe9a."
    with pytest.raises(UnicodeDecodeError):
        pickle.load(io.BytesIO(python2_pickle))
    assert load_plain_pickle_bytes(python2_pickle) == ["café"]


polygon = st.lists(st.floats(0, 40, allow_nan=False), min_size=6, max_size=16).filter(lambda p: len(p) % 2 == 0)


@settings(max_examples=60, deadline=None)
@given(st.lists(polygon, min_size=1, max_size=4))
def test_mask_is_union_of_parts(parts):
    mask, dropped = segmentation_to_mask(parts, height=32, width=48)
    expected = np.zeros((32, 48), dtype=bool)
    for part in parts:
        expected |= mask_utils.decode(mask_utils.frPyObjects([part], 32, 48))[..., 0].astype(bool)
    assert dropped == 0
    np.testing.assert_array_equal(mask, expected)


def test_overlapping_parts_are_not_summed():
    square = [0, 0, 10, 0, 10, 10, 0, 10]
    mask, _ = segmentation_to_mask([square, square], 12, 12)
    assert mask.dtype == bool and mask.sum() == segmentation_to_mask([square], 12, 12)[0].sum()


def test_malformed_polygons_are_dropped_and_counted():
    good = [0, 0, 8, 0, 8, 8, 0, 8]
    mask, dropped = segmentation_to_mask([good, [1, 2, 3], [1, 2, 3, 4, 5, 6, 7], [0, 0, float("nan"), 1, 2, 2]], 10, 10)
    assert dropped == 3
    np.testing.assert_array_equal(mask, segmentation_to_mask([good], 10, 10)[0])


def test_compressed_and_uncompressed_rle_decode_alike():
    truth = np.zeros((9, 7), dtype=np.uint8)
    truth[2:6, 1:5] = 1
    compressed = mask_utils.encode(np.asfortranarray(truth))
    as_json = {"size": compressed["size"], "counts": compressed["counts"].decode("ascii")}
    flat = truth.flatten(order="F")
    runs, current, count = [], 0, 0
    for value in flat:
        if value == current:
            count += 1
        else:
            runs.append(count)
            current, count = value, 1
    runs.append(count)
    uncompressed = {"size": [9, 7], "counts": runs}
    for segmentation in (as_json, uncompressed):
        mask, _ = segmentation_to_mask(segmentation, 9, 7)
        np.testing.assert_array_equal(mask, truth.astype(bool))


def _random_mask(height, width, seed, density, blocks):
    """Noise of some density, or a few filled rectangles (long runs that wrap across columns)."""
    rng = np.random.default_rng(seed)
    if not blocks:
        return rng.random((height, width)) < density
    mask = np.zeros((height, width), dtype=bool)
    for _ in range(rng.integers(0, 4)):
        top, left = rng.integers(0, height), rng.integers(0, width)
        mask[top : top + rng.integers(1, height + 1), left : left + rng.integers(1, width + 1)] = True
    return mask


def _rle(mask):
    return mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))


masks = st.builds(_random_mask, st.integers(1, 40), st.integers(1, 40), st.integers(0, 2**32 - 1),
                  st.floats(0, 1), st.booleans())


@settings(max_examples=150, deadline=None)
@given(masks)
def test_mask_runs_png_and_bbox_match_the_decoded_rle(mask):
    height, width = mask.shape
    runs = MaskRuns.from_rles([[_rle(mask)]], [(height, width)])
    decoded = Image.open(io.BytesIO(runs.pngs()[0]))
    assert decoded.mode == "1" and decoded.size == (width, height)
    np.testing.assert_array_equal(np.asarray(decoded), mask)
    np.testing.assert_array_equal(runs.arrays()[0], mask)
    assert runs.bboxes() == [_bbox(mask)]


def _bbox(mask):
    ys, xs = np.nonzero(mask)
    return [0.0] * 4 if xs.size == 0 else [
        float(xs.min()), float(ys.min()), float(xs.max() - xs.min() + 1), float(ys.max() - ys.min() + 1)]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(masks, st.integers(0, 3)), max_size=8), st.integers(64, 4096))
def test_masks_encoded_together_equal_each_decoded_alone(items, scanline_budget):
    """Masks of different sizes and part counts in one batch, over one or several scanline blocks."""
    from nemo_hf.data import masks as masks_module

    parts = [[_rle(mask)] * copies for mask, copies in items]  # 0 copies: an empty mask
    expected = [mask if copies else np.zeros_like(mask) for mask, copies in items]
    original = masks_module._SCANLINE_BYTES
    masks_module._SCANLINE_BYTES = scanline_budget
    try:
        runs = MaskRuns.from_rles(parts, [mask.shape for mask, _ in items])
        pngs, arrays = runs.pngs(), runs.arrays()
    finally:
        masks_module._SCANLINE_BYTES = original
    assert len(runs) == len(pngs) == len(arrays) == len(items)
    for png, array, truth in zip(pngs, arrays, expected):
        np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(png))), truth)
        np.testing.assert_array_equal(array, truth)
    assert runs.bboxes() == [_bbox(truth) for truth in expected]


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 30), st.integers(1, 30), st.lists(st.tuples(st.integers(0, 2**32 - 1), st.floats(0, 1)), max_size=4))
def test_mask_runs_of_several_rles_are_their_union(height, width, parts):
    layers = [_random_mask(height, width, seed, density, blocks=False) for seed, density in parts]
    union = np.logical_or.reduce(layers) if layers else np.zeros((height, width), dtype=bool)
    runs = MaskRuns.from_rles([[_rle(layer) for layer in layers]], [(height, width)])
    np.testing.assert_array_equal(runs.arrays()[0], union)


def test_mask_of_a_real_sized_image_matches_pycocotools():
    """640x480 with polygons touching the borders and crossing column boundaries."""
    polygons = [[0, 0, 639, 0, 639, 30, 0, 30], [100.5, 470, 300, 200, 500.25, 479.9], [630, 10, 639, 479, 620, 479]]
    rle, dropped = segmentation_to_rle(polygons, 480, 640)
    (mask,) = MaskRuns.from_rles([[rle]], [(480, 640)]).arrays()
    np.testing.assert_array_equal(mask, mask_utils.decode(rle).astype(bool))
    assert dropped == 0 and mask.any()


@pytest.mark.parametrize("counts, size, message", [
    ("9~", [3, 3], "outside the COCO alphabet"),
    ("9 ", [3, 3], "outside the COCO alphabet"),
    ("9P", [3, 3], "end in the middle of a number"),
    ("34", [3, 3], "cover 7 pixels, not the image's 9"),
    ("PPPPPPPP0", [3, 3], "more than 7 groups"),
    ("9", [4, 4], "RLE size 4x4 differs from the image's 3x3"),
    ([4, -1, 6], [3, 3], "run length outside"),
    ([4, 6], [3, 3], "cover 10 pixels"),
])
def test_malformed_rle_is_refused_before_pycocotools_sees_it(counts, size, message):
    with pytest.raises(ValueError, match=message):
        segmentation_to_rle({"size": size, "counts": counts}, 3, 3)


@settings(max_examples=100, deadline=None)
@given(st.lists(masks, max_size=6))
def test_many_rle_strings_parse_at_once_like_each_alone(mask_list):
    """The batched parse against run lengths counted independently from each mask's column-major pixels."""
    counts, offsets = _rle_counts_of_many([_rle(mask)["counts"] for mask in mask_list])
    assert offsets.tolist()[0] == 0 and offsets.size == len(mask_list) + 1
    for i, mask in enumerate(mask_list):
        pixels = mask.flatten(order="F")
        changes = np.flatnonzero(np.diff(pixels.astype(np.int8))) + 1
        runs = np.diff(np.concatenate(([0], changes, [pixels.size])))
        expected = np.concatenate(([0], runs)) if pixels[0] else runs  # COCO starts with a background run
        assert counts[offsets[i]:offsets[i + 1]].tolist() == expected.tolist()


def test_negative_deltas_decode_like_pycocotools():
    """Runs that shrink from column to column are stored as negative deltas."""
    mask = np.zeros((40, 12), dtype=bool)
    for column in range(12):
        mask[: 40 - 3 * column, column] = True
    rle = _rle(mask)
    np.testing.assert_array_equal(MaskRuns.from_rles([[rle]], [(40, 12)]).arrays()[0], mask_utils.decode(rle).astype(bool))
