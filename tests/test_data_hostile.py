"""Hostile refer files: what a crafted or badly damaged download can claim, and what the build does.

Geometry that would crash pycocotools' C code or make it allocate without bound is checked,
clipped or dropped first (such builds run in a subprocess, so a crash fails the test rather
than ending pytest); wrong-typed fields, lone surrogates, absurd size claims and duplicate
ids are a ``ReferFileError`` naming the file and the ref; invisible expressions and empty
segmentations are counted skips. The workers of a killed ``num_proc`` build exit with it.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from pycocotools import mask as mask_utils

import nemo_hf
from nemo_hf.data import ReferDataWarning, ReferFileError

_REPO = Path(nemo_hf.__file__).resolve().parents[1]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(_REPO), os.environ.get("PYTHONPATH")])),
            "OMP_NUM_THREADS": "1", "PYTHONFAULTHANDLER": "1"}


_BUILD = textwrap.dedent("""
    import json, resource, sys, warnings
    import numpy as np
    from nemo_hf import load_refcoco
    from nemo_hf.data import ReferFileError
    root, cache = sys.argv[1:3]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            ds = load_refcoco("refcoco_unc", root, root + "/images", cache_dir=cache, verify_images=False)
        except ReferFileError as err:
            print(json.dumps({"error": str(err)}))
            sys.exit()
    rows = {row["ref_id"]: {"pixels": int(np.asarray(row["mask"]).sum()), "bbox": row["bbox"]}
            for part in ds.values() for row in part}
    print(json.dumps({"rows": rows, "warnings": " ".join(str(w.message) for w in caught),
                      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
""")


def _build_in_subprocess(refer_copy, cache: Path) -> dict:
    """Build the copy (not verifying images) in a fresh interpreter: its rows' mask sizes and
    boxes, warnings and peak RSS, or the ``ReferFileError`` message as ``error``."""
    done = subprocess.run([sys.executable, "-c", _BUILD, str(refer_copy.root), str(cache)],
                          capture_output=True, text=True, env=_env(), timeout=300)
    assert done.returncode == 0, f"the build died (exit {done.returncode}):\n{done.stderr[-3000:]}"
    result = json.loads(done.stdout.strip().splitlines()[-1])
    if "rows" in result:
        result["rows"] = {int(k): v for k, v in result["rows"].items()}
    return result


def _counted(warnings: str, what: str) -> int:
    """The sum over splits of ``<n> <what>`` in the builds' warnings."""
    return sum(int(n) for n in re.findall(rf"(\d+) {what}", warnings))


def _pycocotools_pixels(polygon: list[float], height: int, width: int) -> int:
    return int(mask_utils.decode(mask_utils.frPyObjects([polygon], height, width)).sum())


def test_far_away_and_endless_polygons_are_clipped_or_dropped_in_bounded_memory(refer_copy, tmp_path):
    """Coordinates of 1e7 and beyond once crashed pycocotools or made it allocate gigabytes;
    now far-away polygons are clipped to a margin around the image (same pixels), a polygon
    outlining millions of pixels is dropped, and memory stays that of an ordinary build."""
    ordinary = _build_in_subprocess(refer_copy, tmp_path / "ordinary")  # the same harness, untouched files
    instances, refs = refer_copy.instances(), refer_copy.refs()
    images = {i["id"]: i for i in instances["images"]}
    annotations = {a["id"]: a for a in instances["annotations"]}
    uses = {}
    for ref in refs:
        uses.setdefault(ref["ann_id"], []).append(ref["ref_id"])
    chosen = sorted(uses)[:7]
    size = {a: (images[annotations[a]["image_id"]]["height"], images[annotations[a]["image_id"]]["width"])
            for a in chosen}
    huge, negative, astronomic, overflowing, zigzag, empty, bad_box = chosen

    def square(lo, hi):
        return [lo, lo, hi, lo, hi, hi, lo, hi]

    annotations[huge]["segmentation"] = [square(0, 1e7)]
    annotations[negative]["segmentation"] = [square(-1e9, 1e9)]
    annotations[astronomic]["segmentation"] = [square(-1e300, 1e300), [1, 2, 3]]
    annotations[overflowing]["segmentation"] = [square(-1e308, 1e308)]  # sums past a double: malformed
    height, width = size[zigzag]
    annotations[zigzag]["segmentation"] = [[0, 0, width, height] * 20000]  # 40,000 edges across the image
    annotations[empty]["segmentation"] = []
    annotations[bad_box]["bbox"] = [0, 0, 1e30, 5]
    refer_copy.save_instances(instances)

    result = _build_in_subprocess(refer_copy, tmp_path / "cache")
    rows = result["rows"]

    def pixels(ann_id):
        return {rows[r]["pixels"] for r in uses[ann_id]}

    h, w = size[huge]
    assert pixels(huge) == {_pycocotools_pixels(square(0, 2 * max(h, w)), h, w)} == {h * w}
    h, w = size[negative]
    assert pixels(negative) == {_pycocotools_pixels([-w, -h, 2 * w, -h, 2 * w, 2 * h, -w, 2 * h], h, w)} == {h * w}
    h, w = size[astronomic]
    assert pixels(astronomic) == {h * w}
    assert pixels(overflowing) == pixels(zigzag) == pixels(empty) == {0}
    assert _counted(result["warnings"], "dropped polygons") == sum(len(uses[a]) for a in (astronomic, overflowing, zigzag))
    assert _counted(result["warnings"], "empty masks") == sum(len(uses[a]) for a in (overflowing, zigzag, empty))
    # the box reaching outside the image is replaced by the mask's
    assert _counted(result["warnings"], "boxes replaced by mask boxes") == len(uses[bad_box])
    h, w = size[bad_box]
    assert all(0 < rows[r]["bbox"][2] <= w and 0 < rows[r]["bbox"][3] <= h for r in uses[bad_box])
    # the unchecked polygons above needed gigabytes (1.3 GB for one mask of 1e7); an ordinary build's
    # peak depends on the installed libraries, so it is measured alongside, not assumed
    assert result["peak_rss_mb"] < ordinary["peak_rss_mb"] + 300, (result["peak_rss_mb"], ordinary["peak_rss_mb"])


@pytest.mark.parametrize("segmentation, message", [
    ({"size": [2**20, 2**20], "counts": [2**40]}, r"RLE size 1048576x1048576 differs from the image's"),
    ({"size": [2**31, 1], "counts": "0"}, r"RLE size 2147483648x1 differs from the image's"),
    ({"size": "big", "counts": "0"}, r"RLE size 'big' differs from the image's"),
    ({"counts": None}, r"RLE 'counts' must be a list or a string"),
    ("not a polygon", r"segmentation must be polygons or RLE"),
])
def test_rle_size_claims_are_refused_before_pycocotools_reads_them(refer_copy, tmp_path, segmentation, message):
    instances = refer_copy.instances()
    ref = next(r for r in refer_copy.refs() if r["split"] == "val")
    annotation = next(a for a in instances["annotations"] if a["id"] == ref["ann_id"])
    image = next(i for i in instances["images"] if i["id"] == ref["image_id"])
    if isinstance(segmentation, dict) and "size" not in segmentation:
        segmentation = {"size": [image["height"], image["width"]], **segmentation}
    annotation["segmentation"] = segmentation
    refer_copy.save_instances(instances)
    with pytest.raises(ReferFileError, match=rf"instances.json: annotation {ref['ann_id']} \(ref \d+\) has an "
                                             rf"unreadable segmentation: {message}"):
        refer_copy.load(tmp_path / "cache", split="val")


@pytest.mark.parametrize("field, value", [("width", 2**31), ("height", 70000), ("width", float("inf"))])
def test_absurd_image_size_claims_are_named_without_verifying_images(refer_copy, tmp_path, field, value):
    """Unchecked, a width of 2**31 crashed pycocotools (in a subprocess here for that reason)."""
    instances = refer_copy.instances()
    ref = next(r for r in refer_copy.refs() if r["split"] == "val")
    image = next(i for i in instances["images"] if i["id"] == ref["image_id"])
    image[field] = value
    refer_copy.save_instances(instances)
    first = min(r["ref_id"] for r in refer_copy.refs() if r["image_id"] == ref["image_id"])
    error = _build_in_subprocess(refer_copy, tmp_path / "cache").get("error", "")
    assert re.search(rf"instances.json: image {ref['image_id']} \(ref {first}\) has no usable size", error), error


@pytest.mark.parametrize("damage, message", [
    (lambda ref: ref.update(ref_id="abc"), r"ref #\d+: ref_id 'abc' is not an integer"),
    (lambda ref: ref.update(ref_id=2**63), r"ref #\d+: ref_id 9223372036854775808 is not an integer"),
    (lambda ref: ref.update(ref_id=True), r"ref #\d+: ref_id True is not an integer"),
    (lambda ref: ref.pop("ref_id"), r"ref #\d+: lacks ref_id"),
    (lambda ref: ref.update(sentences=5), r"ref {ref_id}: sentences 5 is not a list"),
    (lambda ref: ref.update(image_id=None), r"ref {ref_id}: image_id None is not an integer"),
    (lambda ref: ref.update(ann_id=[1, "2"]), r"ref {ref_id}: ann_id \[1, '2'\] is neither an integer nor a list"),
    (lambda ref: ref.update(split=["val"]), r"ref {ref_id}: split \['val'\] is not a string"),
    (lambda ref: ref.update(sent_ids="0 1"), r"ref {ref_id}: sent_ids '0 1' is not a list"),
    (lambda ref: ref["sentences"][0].update(sent_id="x"), r"ref {ref_id}: sentence 0: sent_id 'x' is not an integer"),
    (lambda ref: (ref["sentences"][1].pop("sent_id"), ref.update(sent_ids=[0, "y"])),
     r"ref {ref_id}: sentence 1: sent_id 'y' is not an integer"),
    (lambda ref: ref["sentences"][0].update(raw="a \ud800 b"), r"ref {ref_id}: sentence 0: text .* lone surrogate '\\ud800'"),
    (lambda ref: ref["sentences"].append("\udfff!"), r"ref {ref_id}: sentence \d+: text .* lone surrogate"),
    # beyond Python's 4300-digit limit, showing the value itself raised a bare ValueError from the error path
    (lambda ref: ref.update(ref_id=10**5000), r"ref #\d+: ref_id <an integer of 16610 bits> is not an integer of 64 bits"),
    (lambda ref: ref.update(image_id=-(10**5000)), r"ref {ref_id}: image_id <an integer of 16610 bits> is not an integer"),
    (lambda ref: ref.update(ann_id=[1, 10**5000]), r"ref {ref_id}: ann_id \[1, <an integer of 16610 bits>\] is neither"),
    (lambda ref: ref["sentences"][0].update(sent_id=10**5000),
     r"ref {ref_id}: sentence 0: sent_id <an integer of 16610 bits> is not an integer of 64 bits"),
])
def test_wrong_typed_fields_are_named_with_the_file_and_the_ref(refer_copy, tmp_path, damage, message):
    refs = refer_copy.refs()
    ref = next(r for r in refs if r["split"] == "val")
    ref_id = ref["ref_id"]
    damage(ref)
    refer_copy.save_refs(refs)
    with pytest.raises(ReferFileError, match=r"refs\(unc\)\.p: " + message.format(ref_id=ref_id)):
        refer_copy.load(tmp_path / "cache")
    assert _no_dataset_files(tmp_path / "cache")


def _no_dataset_files(cache: Path) -> bool:
    return not [p for p in cache.rglob("*") if p.is_file() and not p.name.endswith(".lock")]


def test_sentences_without_usable_text_are_counted_as_empty(refer_copy, tmp_path):
    """A sentence of another type, or whose fields are, has no text: skipped and counted."""
    refs = refer_copy.refs()
    ref = next(r for r in refs if r["split"] == "train")
    ref["sentences"] += [3.5, {"raw": 7, "sent": None, "tokens": ["a", None], "sent_id": 99}, {"tokens": "abc"}]
    refer_copy.save_refs(refs)
    with pytest.warns(ReferDataWarning, match=r"\[train\]: skipped or repaired 3 empty sentences"):
        ds = refer_copy.load(tmp_path / "cache", split="train")
    assert dict(zip(ds["ref_id"], ds["sentences"]))[ref["ref_id"]] == [s["raw"] for s in ref["sentences"][:-3]]


@pytest.mark.parametrize("damage, message", [
    (lambda i: i["annotations"][3].update(category_id=None), r"annotations #3: category_id None is not an integer"),
    (lambda i: i["annotations"][3].update(image_id="12"), r"annotations #3: image_id '12' is not an integer"),
    (lambda i: i["images"][2].update(id=1.5), r"images #2: id 1.5 is not an integer"),
    (lambda i: i["images"].append(7), r"images #\d+: is not an object"),
    (lambda i: i["categories"][0].update(name=None), r"category \d+: name is not a string"),
    (lambda i: i["categories"][0].update(name="a\ud800"), r"category \d+: name .* lone surrogate"),
    (lambda i: i.update(annotations={}), r"not a COCO instances file"),
])
def test_wrong_typed_instances_entries_are_named(refer_copy, tmp_path, damage, message):
    instances = refer_copy.instances()
    damage(instances)
    refer_copy.save_instances(instances)
    with pytest.raises(ReferFileError, match=r"instances.json: " + message):
        refer_copy.load(tmp_path / "cache")


@pytest.mark.parametrize("payload, message", [
    # PROTO 4, BINUNICODE8 (then BINBYTES8) claiming 1 TiB, then 3 bytes: refused before the unpickler
    # allocates (it gave MemoryError, or where the kernel granted it, found the file too short)
    (b"\x80\x04\x8d" + (2**40).to_bytes(8, "little") + b"abc", r"cannot be read \(the opcode at byte 2 announces "
                                                              r"1099511627776 bytes, but the file has 3 left\)"),
    (b"\x80\x04\x8e" + (2**40).to_bytes(8, "little") + b"abc", r"cannot be read \(the opcode at byte 2 announces "
                                                              r"1099511627776 bytes, but the file has 3 left\)"),
    # lengths past ssize_t (the unpickler's OverflowError)
    (b"\x80\x04\x8e" + (2**64 - 1).to_bytes(8, "little"), r"cannot be read \(the opcode at byte 2 announces "
                                                            r"18446744073709551615 bytes, but the file has 0 left\)"),
    (b"\x80\x04\x95" + (2**64 - 1).to_bytes(8, "little"), r"cannot be read \(the opcode at byte 2 announces "
                                                            r"18446744073709551615 bytes, but the file has 0 left\)"),
    (b"\x80\x02}}b.", r"cannot be read \(AttributeError"),  # BUILD on a dict
    (b"\x80\x02K\x01K\x02a.", r"cannot be read \(AttributeError"),  # APPEND to an int
])
def test_pickles_claiming_absurd_sizes_or_building_nonsense_are_named(refer_copy, tmp_path, payload, message):
    refer_copy.refs_path.write_bytes(payload)
    with pytest.raises(ReferFileError, match=r"refs\(unc\)\.p: " + message):
        refer_copy.load(tmp_path / "cache")


def test_deeply_nested_json_refs_are_named(tmp_path):
    from nemo_hf.data.refer_files import load_refs

    path = tmp_path / "grefs(unc).json"
    path.write_text("[" * 200_000 + "]" * 200_000)
    with pytest.raises(ReferFileError, match=r"grefs\(unc\)\.json: cannot be read \(RecursionError"):
        load_refs(path)


def test_duplicate_ref_ids_are_refused_and_named(refer_copy, tmp_path):
    refs = refer_copy.refs()
    refs[5]["ref_id"] = refs[2]["ref_id"]
    refs[9]["ref_id"] = refs[7]["ref_id"]
    refer_copy.save_refs(refs)
    first, second = sorted([refs[2]["ref_id"], refs[7]["ref_id"]])
    with pytest.raises(ReferFileError, match=rf"refs\(unc\)\.p: 2 ref_id\(s\) used by more than one ref: {first}, {second};"):
        refer_copy.load(tmp_path / "cache")


@pytest.mark.parametrize("part, word", [("annotations", "annotation"), ("images", "image"), ("categories", "category")])
def test_duplicate_instances_ids_are_refused_and_named(refer_copy, tmp_path, part, word):
    """Indexed by id, the last of two entries won: a val ref's mask silently became another object's (or
    0 pixels), an image took another's size. Each id must name one entry, as each ref_id names one ref."""
    instances = refer_copy.instances()
    entries = instances[part]
    entries[3]["id"] = entries[1]["id"]
    entries[4]["id"] = entries[0]["id"]
    refer_copy.save_instances(instances)
    first, second = sorted([entries[0]["id"], entries[1]["id"]])
    with pytest.raises(ReferFileError, match=rf"instances.json: 2 {word} id\(s\) used by more than one entry: "
                                             rf"{first}, {second};"):
        refer_copy.load(tmp_path / "cache")
    assert _no_dataset_files(tmp_path / "cache")


@pytest.mark.parametrize("invisible", ["\u200b", "\x00", " \u200b\u200c\u2060\ufeff ", "\t\x1f\x7f", "\u3000\u00a0", "\u2028\u202e"])
def test_expressions_of_invisible_characters_count_as_empty(refer_copy, tmp_path, invisible):
    refs = refer_copy.refs()
    train = [r for r in refs if r["split"] == "train"]
    for sentence in train[0]["sentences"][:1] + train[1]["sentences"]:
        sentence["raw"] = sentence["sent"] = invisible
        sentence["tokens"] = [invisible]
    refer_copy.save_refs(refs)
    with pytest.warns(ReferDataWarning) as record:
        ds = refer_copy.load(tmp_path / "cache", split="train")
    message = " ".join(str(w.message) for w in record)
    assert f"{1 + len(train[1]['sentences'])} empty sentences" in message and "1 refs without sentences" in message
    rows = dict(zip(ds["ref_id"], ds["sentences"]))
    assert train[1]["ref_id"] not in rows
    assert rows[train[0]["ref_id"]] == [s["raw"] for s in train[0]["sentences"][1:]]


def test_visible_text_around_invisible_characters_is_kept(refer_copy, tmp_path):
    refs = refer_copy.refs()
    ref = next(r for r in refs if r["split"] == "train")
    ref["sentences"][0]["raw"] = "\u200bcafé\x00"
    refer_copy.save_refs(refs)
    ds = refer_copy.load(tmp_path / "cache", split="train")
    assert dict(zip(ds["ref_id"], ds["sentences"]))[ref["ref_id"]][0] == "\u200bcafé\x00"


def test_empty_segmentation_is_counted_as_an_empty_mask(refer_copy, tmp_path):
    instances, refs = refer_copy.instances(), refer_copy.refs()
    ref = next(r for r in refs if r["split"] == "train")
    next(a for a in instances["annotations"] if a["id"] == ref["ann_id"])["segmentation"] = []
    refer_copy.save_instances(instances)
    users = [r["ref_id"] for r in refs if r["ann_id"] == ref["ann_id"] and r["split"] == "train"]
    with pytest.warns(ReferDataWarning, match=rf"\[train\]: skipped or repaired .*{len(users)} empty masks"):
        ds = refer_copy.load(tmp_path / "cache", split="train")
    masks = dict(zip(ds["ref_id"], ds["mask"]))
    assert all(not np.asarray(masks[r]).any() for r in users)


# -- workers of a killed build ------------------------------------------------------------

_SLOW_PARALLEL_BUILD = textwrap.dedent("""
    import sys, time
    import nemo_hf.data.builder as builder
    from nemo_hf import load_refcoco

    encode = builder._with_masks
    def slowly(*args, **kwargs):
        time.sleep(0.5)  # the workers are still busy when the test kills this process
        return encode(*args, **kwargs)
    builder._with_masks = slowly
    builder._REFS_PER_SHARD = 3
    builder.RefCOCO.DEFAULT_WRITER_BATCH_SIZE = 2
    root, cache = sys.argv[1:3]
    load_refcoco("refcoco_unc", root, root + "/images", cache_dir=cache, num_proc=2)
""")


def _alive(process) -> bool:
    import psutil

    try:
        return process.status() != psutil.STATUS_ZOMBIE  # a zombie is dead, waiting to be reaped
    except psutil.NoSuchProcess:
        return False


def _kill_and_watch_children(command: list[str], ready) -> list:
    """Start ``command``, SIGKILL it once ``ready(its psutil.Process)``, and return those of
    its descendants then that are still alive 2 s later."""
    import psutil

    process = subprocess.Popen(command, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        parent = psutil.Process(process.pid)
        deadline = time.monotonic() + 120
        while not ready(parent):
            assert process.poll() is None and time.monotonic() < deadline, "the command never got ready"
            time.sleep(0.05)
        children = parent.children(recursive=True)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    deadline = time.monotonic() + 2
    while any(map(_alive, children)) and time.monotonic() < deadline:
        time.sleep(0.05)
    alive = [child for child in children if _alive(child)]
    for child in alive:
        child.kill()
    return alive


def test_workers_of_a_killed_parallel_build_exit_with_it(refer_copy, tmp_path):
    """Two pool workers and datasets' manager process: all gone within 2 s of the SIGKILL."""
    command = [sys.executable, "-c", _SLOW_PARALLEL_BUILD, str(refer_copy.root), str(tmp_path / "cache")]
    started = []

    def busy(parent):  # the three children exist, and have had time to start on their shards
        if len(parent.children(recursive=True)) < 3:
            return False
        started.append(time.monotonic())
        return time.monotonic() - started[0] > 0.5

    alive = _kill_and_watch_children(command, busy)
    assert not alive, f"{len(alive)} workers outlived the killed build"


def test_without_the_kernel_signal_a_thread_watches_the_parent(tmp_path):
    """The fallback where Linux's PR_SET_PDEATHSIG is unavailable (macOS, BSD)."""
    armed = tmp_path / "armed"
    child = ("import pathlib, sys, time, nemo_hf.data.orphans as o; o._kernel_kills_on_parent_death = lambda: False; "
             "o.exit_with_parent(); pathlib.Path(sys.argv[1]).touch(); time.sleep(60)")
    parent = (f"import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', {child!r}, {str(armed)!r}]); "
              "time.sleep(60)")
    alive = _kill_and_watch_children([sys.executable, "-c", parent], lambda _: armed.exists())
    assert not alive


@pytest.mark.parametrize("forked_from_here", [True, False])
def test_a_worker_started_without_fork_arms_itself_on_its_first_shard(refer_tree, monkeypatch, forked_from_here):
    """spawn and forkserver run no at-fork hook: the worker arms itself in _generate_tables."""
    from nemo_hf.data import RefCOCO

    armed = []
    monkeypatch.setattr("nemo_hf.data.builder.exit_with_parent", lambda: armed.append(True))
    builder = RefCOCO(config_name="refcoco_unc", data_dir=str(refer_tree.root), image_dir=str(refer_tree.image_dir))
    builder._build_pid = os.getpid() if forked_from_here else os.getpid() + 1  # as a worker sees its builder
    next(builder._generate_tables("val", [(0, 1)]))
    assert armed == ([] if forked_from_here else [True])
