"""The restricted unpickler and mask decoding, checked against plain pickle and pycocotools."""

from __future__ import annotations

import io
import os
import pickle
import re
import sys
import time
from pathlib import Path

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


def _text(value: str) -> bytes:
    return value.encode("raw_unicode_escape") + b"\n"


def _code_reaching_pickles(marker: str) -> dict[str, bytes]:
    """Pickles that run ``touch marker`` (or import a module that does) under the standard
    unpickler, one per route to code. Built afresh for each load: one embeds a position in
    ``object.__subclasses__()``, which grows as classes are made."""
    touch = _text(f"touch {marker}")
    python = _text(f"__import__('pathlib').Path({marker!r}).touch()")

    def getattr_of(obj: bytes, name: str) -> bytes:  # memo 0 holds builtins.getattr
        return b"g0\n(" + obj + b"V" + _text(name) + b"tR"

    # getattr alone (no other import) escapes through object's subclasses to os.system
    subclasses = getattr_of(getattr_of(b"c__builtin__\nset\n", "__base__"), "__subclasses__") + b")R"
    position = object.__subclasses__().index(os._wrap_close)
    wrap_close = getattr_of(subclasses, "__getitem__") + b"(I" + _text(str(position)) + b"tR"
    system = getattr_of(getattr_of(getattr_of(wrap_close, "__init__"), "__globals__"), "__getitem__")
    system += b"(V" + _text("system") + b"tR"
    return {
        "GLOBAL builtins.eval + REDUCE": b"cbuiltins\neval\n(V" + python + b"tR.",
        "GLOBAL __builtin__.eval (the protocol-2 name)": b"\x80\x02c__builtin__\neval\n(V" + python + b"tR.",
        "STACK_GLOBAL builtins.exec": b"\x80\x04\x8c\x08builtins\x8c\x04exec\x93\x8c" + bytes([len(python) - 1])
        + python[:-1] + b"\x85R.",
        "builtins.getattr alone": b"cbuiltins\ngetattr\np0\n0" + system + b"(V" + touch + b"tR.",
        "builtins.__import__ of a module with side effects": b"cbuiltins\n__import__\n(Vnemo_hf_test_payload\ntR.",
        "os.system": b"cos\nsystem\n(V" + touch + b"tR.",
        "posix.system": b"cposix\nsystem\n(V" + touch + b"tR.",
        "subprocess.Popen": b"csubprocess\nPopen\n((Vtouch\nV" + _text(marker) + b"ltR.",
        "functools.partial, called": b"cfunctools\npartial\n(cos\nsystem\nV" + touch + b"tR)R.",
        "INST": b"(V" + touch + b"ios\nsystem\n.",
        "OBJ": b"(cos\nsystem\nV" + touch + b"o.",
        "NEWOBJ of a partial, called": b"\x80\x02cfunctools\npartial\ncos\nsystem\nV" + touch + b"\x86\x81)R.",
        "NEWOBJ_EX of a partial, called": b"\x80\x04cfunctools\npartial\ncos\nsystem\nV" + touch + b"\x86}\x92)R.",
        # partial(print), whose __setstate__ (BUILD) swaps in os.system before the call
        "BUILD": b"\x80\x02cfunctools\npartial\ncbuiltins\nprint\n\x85R(cos\nsystem\nV" + touch + b"\x85}Ntb)R.",
    }


def _write_refs(tmp_path, data: bytes):
    path = tmp_path / "refs(unc).p"
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("route", list(_code_reaching_pickles("m")))
def test_every_route_to_code_is_refused_with_the_file_named(tmp_path, monkeypatch, route):
    from nemo_hf.data.refer_files import ReferFileError, load_refs

    marker = tmp_path / "pwned"
    (tmp_path / "nemo_hf_test_payload.py").write_text(f"import pathlib; pathlib.Path({str(marker)!r}).touch()")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "nemo_hf_test_payload", raising=False)
    path = _write_refs(tmp_path, _code_reaching_pickles(str(marker))[route])
    with pytest.raises(ReferFileError, match=r"refs\(unc\)\.p: refused to load \w+\.\w+"):
        load_refs(path)
    assert not marker.exists()
    # the same route does reach code under the standard unpickler (else the case would prove nothing)
    pickle.loads(_code_reaching_pickles(str(marker))[route])
    deadline = time.monotonic() + 10  # Popen touches the file from another process
    while not marker.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert marker.exists()


@pytest.mark.parametrize("opcode", [b"P" + b"os.system\n", b"\x80\x02U\x09os.systemQ"], ids=["PERSID", "BINPERSID"])
def test_persistent_ids_are_refused_with_the_file_named(tmp_path, opcode):
    from nemo_hf.data.refer_files import ReferFileError, load_refs

    with pytest.raises(ReferFileError, match=r"refs\(unc\)\.p: refused a persistent id"):
        load_refs(_write_refs(tmp_path, opcode + b"."))


@pytest.mark.parametrize("code, opcode", [(0xF0, b"\x82\xf0"), (0x1F0, b"\x83\xf0\x01"), (0x100F0, b"\x84\xf0\x00\x01\x00")],
                         ids=["EXT1", "EXT2", "EXT4"])
def test_extension_codes_are_refused_even_once_the_standard_unpickler_cached_them(tmp_path, code, opcode):
    """``copyreg`` extension codes name a global; the C unpickler caches what a code resolved
    to and serves later loads, ours included, from that cache without asking find_class."""
    import copyreg

    from nemo_hf.data.refer_files import ReferFileError, load_refs

    marker = tmp_path / "pwned"
    data = b"\x80\x02" + opcode + b"(V" + _text(f"touch {marker}") + b"tR."
    copyreg.add_extension("os", "system", code)
    try:
        pickle.loads(data)  # registered and cached: the standard unpickler runs it
        assert marker.exists()
        marker.unlink()
        with pytest.raises(ReferFileError, match=r"refs\(unc\)\.p: refused to load os\.system"):
            load_refs(_write_refs(tmp_path, data))
        assert not marker.exists()
    finally:
        copyreg.remove_extension("os", "system", code)


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


# -- the memo: memory bounded by the file's size -----------------------------------------------------

_LOAD_UNDER_A_MEMORY_LIMIT = """
import json, resource, sys
from pathlib import Path
from nemo_hf.data.refer_files import ReferFileError, load_refs

def address_space():
    status = Path("/proc/self/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmSize:"))) * 1024

# a regression must fail here, not take the machine down: 1 GB more than the interpreter holds
resource.setrlimit(resource.RLIMIT_AS, (address_space() + (1 << 30), resource.getrlimit(resource.RLIMIT_AS)[1]))
results = []
for path in sys.argv[1:]:
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    try:
        outcome = repr(load_refs(Path(path)))[:80]
    except ReferFileError as err:
        outcome = str(err)
    results.append({"outcome": outcome, "grew_mb": (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024})
print(json.dumps(results))
"""


def _load_refs_under_a_memory_limit(paths: list) -> list[dict]:
    """``load_refs`` of each file in a fresh interpreter limited to 1 GB more address space than it starts
    with: the error message (or the refs' repr) and how much its peak RSS grew, per file."""
    import json
    import subprocess

    from nemo_hf.data import refer_files

    repo = str(Path(refer_files.__file__).resolve().parents[2])
    done = subprocess.run([sys.executable, "-c", _LOAD_UNDER_A_MEMORY_LIMIT, *map(str, paths)], capture_output=True,
                          text=True, timeout=300, env={**os.environ, "PYTHONPATH": repo, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def _long_binput(index: int) -> bytes:
    return b"r" + index.to_bytes(4, "little")


_MEMO_ATTACKS = {
    # 9 bytes that made the C unpickler zero a 2.1 GB memo and load []: no error
    "LONG_BINPUT 2**27": (b"\x80\x02]" + _long_binput(2**27) + b".", 134217728, 3),
    "LONG_BINPUT 2**24, loaded quietly in 256 MB": (b"\x80\x02]" + _long_binput(2**24) + b".", 16777216, 3),
    "LONG_BINPUT 2**32 - 1 (64 GB)": (b"\x80\x02]" + _long_binput(2**32 - 1) + b".", 4294967295, 3),
    "protocol-0 PUT": (b"(lp134217728\n.", 134217728, 2),
    "PUT past Python's 4300 digits": (b"(lp" + b"9" * 5000 + b"\n.", None, 2),
    "after a string of 300 bytes": (b"\x80\x02X" + (300).to_bytes(4, "little") + b"r" * 300 + b"0]"
                                    + _long_binput(2**27) + b".", 134217728, 309),
    "after 5000 opcodes": (b"\x80\x02" + b"N0" * 5000 + b"]" + _long_binput(2**27) + b".", 134217728, 10003),
}


def test_memo_indices_beyond_the_file_are_refused_before_memory_is_taken(tmp_path):
    """The C unpickler grows its memo to twice the largest index stored, 16 bytes per unit of index,
    before any error. Run under a memory limit: the old code reached it (MemoryError) or took 256 MB."""
    paths = []
    for number, (data, _, _) in enumerate(_MEMO_ATTACKS.values()):
        paths.append(tmp_path / f"{number}" / "refs(unc).p")
        paths[-1].parent.mkdir()
        paths[-1].write_bytes(data)
    for (what, (data, index, position)), result in zip(_MEMO_ATTACKS.items(), _load_refs_under_a_memory_limit(paths)):
        if index is None:
            expected = (r"refs\(unc\)\.p: cannot be read: it stores an object under a memo index of 5000 digits "
                        rf"\(at byte 2\), beyond any a pickle of {len(data)} bytes can fill")
        else:
            expected = (rf"refs\(unc\)\.p: cannot be read: it stores an object under memo index {index} \(at byte "
                        rf"{position}\), beyond any a pickle of {len(data)} bytes can fill, for which the unpickler "
                        rf"would reserve [\d.]+ GB; the file is corrupt or crafted — download it again")
        assert re.search(expected, result["outcome"]), (what, result["outcome"])
        assert result["grew_mb"] < 64, (what, result)


def test_bytes_that_look_like_a_memo_index_inside_a_string_are_text():
    text = _long_binput(0x7F7F7F7F)  # index 2**31 - 1 - ..., in bytes that are also text
    for data in (b"\x80\x02X\x05\x00\x00\x00" + text + b".", b"\x80\x04\x8c\x05" + text + b".",
                 b"\x80\x03C\x05" + _long_binput(2**32 - 1) + b".", b"VrABCD\n.", b"(lp0\nVrABCD\np1\na."):
        assert load_plain_pickle_bytes(data) == pickle.loads(data)


@pytest.mark.parametrize("pre_311", [False, True], ids=["possessive run", "runs of 4096 opcodes"])
@pytest.mark.parametrize("protocol", [0, 2, 4])
def test_large_pickles_with_long_strings_and_big_memos_round_trip(monkeypatch, pre_311, protocol):
    """Memo indices up to the file's size, strings past the 255 bytes a pattern can skip, big integers."""
    from nemo_hf.data import pickle_bounds

    monkeypatch.setattr(pickle_bounds, "_PRE_311", pre_311)
    pickle_bounds._run_of_opcodes.cache_clear()
    try:
        value = [{"raw": f"man {n}", "tokens": [str(n), "x" * (n % 700)], "sent_id": n * 7919, "big": 10**40 + n,
                  "float": n / 3, "ids": {n, n + 1}} for n in range(3000)]
        if protocol >= 3:  # earlier protocols pickle bytes through a global, which is refused
            value.append({"blob": [bytes([n % 256]) * n for n in range(0, 600, 7)]})
        data = pickle.dumps(value, protocol=protocol)
        assert load_plain_pickle_bytes(data) == value
        # an index in [2**floor(log2(size)), size): the run stops there and Python reads it exactly
        padded = b"\x80\x02]" + _long_binput(200) + b"." + b"\x00" * 200
        assert 128 <= 200 < len(padded) < 256 and load_plain_pickle_bytes(padded) == []
        with pytest.raises(pickle_bounds.OversizedPickleError, match="memo index 134217728 \\(at byte 10003\\)"):
            pickle_bounds.check_pickle_bounds(_MEMO_ATTACKS["after 5000 opcodes"][0])
    finally:
        pickle_bounds._run_of_opcodes.cache_clear()


_FUZZ_UNDER_A_MEMORY_LIMIT = """
import io, pickle, resource, struct, sys
from pathlib import Path
from hypothesis import given, settings, HealthCheck
from hypothesis import strategies as st
from nemo_hf.data.pickle_bounds import OversizedPickleError, check_pickle_bounds
from nemo_hf.data.safe_pickle import _PlainDataUnpickler, _peekable

status = Path("/proc/self/status").read_text()
vm = int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmSize:"))) * 1024
resource.setrlimit(resource.RLIMIT_AS, (vm + (1 << 30), resource.getrlimit(resource.RLIMIT_AS)[1]))

index = st.one_of(st.integers(0, 300), st.integers(0, 2**32 - 1))
text = st.binary(max_size=300)
def counted(op, width):
    return text.map(lambda t: op + len(t).to_bytes(width, "little") + t)
opcode = st.one_of(
    st.sampled_from([b"(", b")", b"]", b"}", b"N", b"0", b"1", b"2", b"a", b"e", b"u", b"s", b"l", b"d", b"t",
                     b"\\x85", b"\\x86", b"\\x88", b"\\x8f", b"\\x90", b"\\x94", b".", b"\\x80\\x02", b"\\x80\\x04"]),
    index.map(lambda i: b"r" + i.to_bytes(4, "little")), st.integers(0, 255).map(lambda i: b"q" + bytes([i])),
    st.integers(0, 255).map(lambda i: b"h" + bytes([i])), index.map(lambda i: b"j" + i.to_bytes(4, "little")),
    index.map(lambda i: b"p%d\\n" % i), index.map(lambda i: b"g%d\\n" % i), st.integers(-5, 5).map(lambda i: b"I%d\\n" % i),
    counted(b"X", 4), counted(b"B", 4), counted(b"T", 4), counted(b"\\x8c", 1), counted(b"U", 1), counted(b"C", 1),
    counted(b"\\x8a", 1), counted(b"\\x8b", 4), counted(b"\\x8d", 8), counted(b"\\x95", 8).map(lambda b: b[:9]),
    text.map(lambda t: b"V" + t.replace(b"\\n", b"") + b"\\n"), st.binary(min_size=1, max_size=6),
)

@settings(max_examples=3000, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(st.lists(opcode, max_size=40).map(b"".join))
def memo_stays_below_the_files_size(data):
    try:
        check_pickle_bounds(data)
    except OversizedPickleError:
        return
    unpickler = _PlainDataUnpickler(_peekable(data), encoding="latin1")
    try:
        unpickler.load()
    except MemoryError:  # the limit is 1 GB above the interpreter: far more than these bytes may claim
        raise AssertionError(f"accepted, and the unpickler ran out of memory: {data!r}")
    except Exception:
        pass
    stored = unpickler.memo.copy()
    assert all(i < max(len(data), 256) for i in stored), (data, max(stored))

memo_stays_below_the_files_size()
print("ok")
"""


def test_every_pickle_the_check_accepts_keeps_its_memo_below_its_size():
    """Random opcode sequences, memo indices anywhere in 4 bytes, lengths that run past the data: whatever
    the check lets through, the C unpickler stores nothing at an index of the file's size or more. In a
    subprocess under a memory limit, so a miss fails the test instead of exhausting the machine."""
    import subprocess

    from nemo_hf.data import refer_files

    repo = str(Path(refer_files.__file__).resolve().parents[2])
    done = subprocess.run([sys.executable, "-c", _FUZZ_UNDER_A_MEMORY_LIMIT], capture_output=True, text=True,
                          timeout=600, env={**os.environ, "PYTHONPATH": repo, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0 and done.stdout.strip().endswith("ok"), done.stderr[-3000:]
