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

from nemo_hf.data.masks import encode_mask_png, segmentation_to_mask
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


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 40), st.integers(1, 40), st.integers(0, 2**32 - 1), st.floats(0, 1))
def test_mask_png_decodes_to_the_same_bools(height, width, seed, density):
    mask = np.random.default_rng(seed).random((height, width)) < density
    decoded = Image.open(io.BytesIO(encode_mask_png(mask)))
    assert decoded.mode == "1" and decoded.size == (width, height)
    np.testing.assert_array_equal(np.asarray(decoded), mask)
