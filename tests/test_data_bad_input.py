"""Every bad input named in the data issue: a clear error naming the item, or a counted skip.

Errors (the build stops): missing file or folder, truncated or code-executing pickle, corrupt
or truncated image, an image file absent from the image folder, unknown config or split.
Counted skips with a ReferDataWarning (the build goes on): a ref whose annotation or image is
absent from instances.json, an empty expression (a ref left with none is skipped).
"""

from __future__ import annotations

import gc
import json
import os

import pytest

from nemo_hf import load_refcoco
from nemo_hf.data import ReferDataWarning, ReferFileError


def _no_cache_left(cache):
    """A failed build leaves no dataset files (only datasets' lock files may remain)."""
    leftovers = [p for p in cache.rglob("*") if p.is_file() and not p.name.endswith(".lock")]
    return not leftovers


@pytest.mark.parametrize("missing", ["instances.json", "refs(unc).p"])
def test_missing_file_is_named_with_what_to_download(refer_copy, tmp_path, missing):
    (refer_copy.root / "refcoco" / missing).unlink()
    with pytest.raises(ReferFileError, match=rf"missing .*{missing.replace('(', '.').replace(')', '.')}.*download"):
        refer_copy.load(tmp_path / "cache")


def test_missing_image_folder(refer_copy, tmp_path):
    with pytest.raises(ReferFileError, match="missing image folder .*nowhere.*train2014"):
        load_refcoco("refcoco_unc", refer_copy.root, refer_copy.root / "nowhere", cache_dir=tmp_path / "cache")


def test_code_executing_pickle_is_refused(refer_copy, tmp_path):
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    refer_copy.save_refs([Exploit()])
    with pytest.raises(ReferFileError, match=r"refs\(unc\)\.p: refused to load"):
        refer_copy.load(tmp_path / "cache")
    assert not marker.exists()


def test_truncated_pickle(refer_copy, tmp_path):
    path = refer_copy.root / "refcoco" / "refs(unc).p"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(ReferFileError, match=r"refs\(unc\)\.p: cannot be read .*truncated"):
        refer_copy.load(tmp_path / "cache")
    assert _no_cache_left(tmp_path / "cache")


def _first_train_image(refer_copy):
    ref = next(r for r in refer_copy.refs() if r["split"] == "train")
    return ref, refer_copy.root / "images" / f"COCO_train2014_{ref['image_id']:012d}.jpg"


def test_corrupt_image_is_named(refer_copy, tmp_path):
    _, image = _first_train_image(refer_copy)
    image.write_bytes(b"<html>rate limited</html>")
    with pytest.raises(ReferFileError, match=rf"{image.name}: not a readable image"):
        refer_copy.load(tmp_path / "cache")


def test_truncated_image_is_named(refer_copy, tmp_path):
    _, image = _first_train_image(refer_copy)
    image.write_bytes(image.read_bytes()[: image.stat().st_size // 2])
    with pytest.raises(ReferFileError, match=rf"{image.name}: truncated JPEG"):
        refer_copy.load(tmp_path / "cache")
    assert _no_cache_left(tmp_path / "cache")
    assert gc.isenabled() and gc.get_freeze_count() == 0  # the failed build restored the collector


def test_image_of_another_size_is_named(refer_copy, tmp_path):
    from PIL import Image

    _, image = _first_train_image(refer_copy)
    Image.open(image).resize((33, 22)).save(image, "JPEG")
    with pytest.raises(ReferFileError, match=rf"{image.name}: image is 33x22 but instances.json says \d+x\d+"):
        refer_copy.load(tmp_path / "cache")


def _png_claiming(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width`` x ``height`` 1-bit pixels, with one row of data."""
    import struct
    import zlib

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    row = zlib.compress(b"\x00" * (1 + (width + 7) // 8))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", row) + chunk(b"IEND", b"")


def _jpeg_claiming(path, width: int, height: int) -> bytes:
    """The JPEG at ``path`` with its frame header claiming ``width`` x ``height``."""
    import struct

    data = bytearray(path.read_bytes())
    frame = data.index(b"\xff\xc0")  # baseline start-of-frame: length, precision, height, width
    struct.pack_into(">HH", data, frame + 5, height, width)
    return bytes(data)


@pytest.mark.parametrize("image_format", ["PNG", "JPEG"])
def test_decompression_bomb_is_named(refer_copy, tmp_path, image_format):
    """An image over PIL's pixel limit escaped as DecompressionBombError inside datasets' DatasetGenerationError."""
    _, image = _first_train_image(refer_copy)
    claimed = 60000, 60000  # 3.6 gigapixels: over twice PIL's default limit, which PIL refuses to open
    image.write_bytes(_png_claiming(*claimed) if image_format == "PNG" else _jpeg_claiming(image, *claimed))
    with pytest.raises(ReferFileError, match=rf"{image.name}: too large to open \(Image size \(3600000000 pixels\) "
                                             r"exceeds limit .*\); if the image is genuine, raise "
                                             r"PIL.Image.MAX_IMAGE_PIXELS before the build, else download it again"):
        refer_copy.load(tmp_path / "cache")
    assert _no_cache_left(tmp_path / "cache")


@pytest.mark.parametrize("counts", ["~~", "0", 17])
def test_corrupt_rle_segmentation_is_named(refer_copy, tmp_path, counts):
    """A corrupt RLE is refused before pycocotools, whose C code trusts the runs, reads it."""
    instances = refer_copy.instances()
    ref = next(r for r in refer_copy.refs() if r["split"] == "val")
    annotation = next(a for a in instances["annotations"] if a["id"] == ref["ann_id"])
    image = next(i for i in instances["images"] if i["id"] == annotation["image_id"])
    annotation["segmentation"] = {"size": [image["height"], image["width"]], "counts": counts}
    refer_copy.save_instances(instances)
    with pytest.raises(ReferFileError, match=rf"instances.json: annotation {ref['ann_id']} \(ref {ref['ref_id']}\) "
                                             "has an unreadable segmentation: RLE"):
        refer_copy.load(tmp_path / "cache", split="val")


@pytest.mark.parametrize("height", [0, None, "tall"])
def test_image_without_a_usable_size_is_named(refer_copy, tmp_path, height):
    instances = refer_copy.instances()
    ref = next(r for r in refer_copy.refs() if r["split"] == "val")
    image = next(i for i in instances["images"] if i["id"] == ref["image_id"])
    image["height"] = height
    refer_copy.save_instances(instances)
    with pytest.raises(ReferFileError, match=rf"instances.json: image {ref['image_id']} \(ref {ref['ref_id']}\) has no usable size"):
        refer_copy.load(tmp_path / "cache", split="val", verify_images=False)
    assert _no_cache_left(tmp_path / "cache")


@pytest.mark.parametrize("verify_images", [True, False])
@pytest.mark.parametrize("field", ["height", "width"])
def test_image_size_of_another_type_is_named(refer_copy, tmp_path, field, verify_images):
    """A size stored as a string gave 'image is 328x285 but instances.json says 328x285' (or, unverified,
    was read as a number)."""
    instances = refer_copy.instances()
    ref = next(r for r in refer_copy.refs() if r["split"] == "val")
    image = next(i for i in instances["images"] if i["id"] == ref["image_id"])
    stored = image[field]
    image[field] = str(stored)
    refer_copy.save_instances(instances)
    first = min(r["ref_id"] for r in refer_copy.refs() if r["image_id"] == ref["image_id"] and r["split"] == "val")
    with pytest.raises(ReferFileError, match=rf"instances.json: image {ref['image_id']} \(ref {first}\) has no usable "
                                             rf"size \({field} '{stored}' is not an integer\)"):
        refer_copy.load(tmp_path / "cache", split="val", verify_images=verify_images)


def test_bool_polygons_are_dropped_and_bool_rle_counts_refused(refer_copy, tmp_path):
    """JSON true/false are not coordinates nor run lengths, though Python counts them as 1 and 0."""
    instances = refer_copy.instances()
    refs = [r for r in refer_copy.refs() if r["split"] == "val"]
    by_id = {a["id"]: a for a in instances["annotations"]}
    by_id[refs[0]["ann_id"]]["segmentation"] = [[False, False, True, False, True, True, False, True] * 2]
    refer_copy.save_instances(instances)
    users = [r["ref_id"] for r in refs if r["ann_id"] == refs[0]["ann_id"]]
    with pytest.warns(ReferDataWarning, match=rf"\[val\]: skipped or repaired {len(users)} dropped polygons, "
                                              rf"{len(users)} empty masks"):
        refer_copy.load(tmp_path / "cache", split="val")

    image = next(i for i in instances["images"] if i["id"] == refs[0]["image_id"])
    by_id[refs[0]["ann_id"]]["segmentation"] = {"size": [image["height"], image["width"]],
                                                "counts": [True, image["height"] * image["width"] - 1]}
    refer_copy.save_instances(instances)
    with pytest.raises(ReferFileError, match=rf"annotation {refs[0]['ann_id']} \(ref {users[0]}\) has an unreadable "
                                             r"segmentation: RLE 'counts' must be integers, got bool"):
        refer_copy.load(tmp_path / "cache2", split="val")


def test_a_dangling_category_id_is_a_counted_repair_naming_the_ref(refer_copy, tmp_path):
    """It gave category "" without a word. Like the refs' other dangling references (annotations, images:
    counted skips), it is counted; the row keeps its mask and sentences, with category "", and the first
    such ref is named."""
    instances = refer_copy.instances()
    refs = sorted((r for r in refer_copy.refs() if r["split"] == "train"), key=lambda r: r["ref_id"])
    annotation = next(a for a in instances["annotations"] if a["id"] == refs[0]["ann_id"])
    annotation["category_id"] = 999
    refer_copy.save_instances(instances)
    users = [r["ref_id"] for r in refs if r["ann_id"] == annotation["id"]]
    with pytest.warns(ReferDataWarning, match=rf"\[train\]: skipped or repaired .*{len(users)} refs with unknown "
                                              rf"category \(first: ref {users[0]}, category_id 999 of annotation "
                                              rf"{annotation['id']}\)"):
        ds = refer_copy.load(tmp_path / "cache", split="train")
    rows = {row["ref_id"]: row for row in ds.select_columns(["ref_id", "category_id", "category"])}
    assert all(rows[r]["category_id"] == 999 and rows[r]["category"] == "" for r in users)


def test_image_file_absent_from_folder(refer_copy, tmp_path):
    ref, image = _first_train_image(refer_copy)
    image.unlink()
    with pytest.raises(ReferFileError, match=rf"image {ref['image_id']} \(ref {ref['ref_id']}\) is not in"):
        refer_copy.load(tmp_path / "cache")


def test_train2017_naming_is_accepted(refer_copy, tmp_path):
    for image in (refer_copy.root / "images").iterdir():
        image.rename(image.with_name(image.name.removeprefix("COCO_train2014_")))
    assert len(refer_copy.load(tmp_path / "cache", split="val")) > 0


def test_ref_with_absent_annotation_or_image_is_a_counted_skip(refer_copy, tmp_path):
    refs = refer_copy.refs()
    train = [r for r in refs if r["split"] == "train"]
    instances = refer_copy.instances()
    lost_ann = train[0]["ann_id"]
    lost_image = next(r["image_id"] for r in train if r["image_id"] != train[0]["image_id"])
    instances["annotations"] = [a for a in instances["annotations"] if a["id"] != lost_ann]
    instances["images"] = [i for i in instances["images"] if i["id"] != lost_image]
    refer_copy.save_instances(instances)
    dropped = {r["ref_id"] for r in train if r["ann_id"] == lost_ann or r["image_id"] == lost_image}
    with pytest.warns(ReferDataWarning, match=r"\[train\]: skipped .*missing annotation") as record:
        ds = refer_copy.load(tmp_path / "cache", split="train")
    message = " ".join(str(w.message) for w in record)
    assert "refs missing image" in message
    assert set(ds["ref_id"]) == {r["ref_id"] for r in train} - dropped


def test_empty_expression_is_dropped_and_counted(refer_copy, tmp_path):
    refs = refer_copy.refs()
    train = [r for r in refs if r["split"] == "train"]
    train[0]["sentences"][0]["raw"] = train[0]["sentences"][0]["sent"] = "   "
    train[0]["sentences"][0]["tokens"] = []
    for sentence in train[1]["sentences"]:
        sentence["raw"] = sentence["sent"] = ""
        sentence["tokens"] = []
    refer_copy.save_refs(refs)
    with pytest.warns(ReferDataWarning, match=r"empty sentences.*|refs without sentences") as record:
        ds = refer_copy.load(tmp_path / "cache", split="train")
    message = " ".join(str(w.message) for w in record)
    assert f"{1 + len(train[1]['sentences'])} empty sentences" in message and "1 refs without sentences" in message
    rows = {r: s for r, s in zip(ds["ref_id"], ds["sentences"])}
    assert train[1]["ref_id"] not in rows
    assert rows[train[0]["ref_id"]] == [s["raw"] for s in train[0]["sentences"][1:]]


def test_unknown_config_and_split(refer_copy, tmp_path):
    with pytest.raises(ValueError, match="unknown RefCOCO config 'refcoco_umd'; choose one of: refcoco_unc"):
        load_refcoco("refcoco_umd", refer_copy.root, refer_copy.root / "images")
    with pytest.raises(ValueError, match="'refcocog_umd' has no split 'testA'; its splits are: train, val, test"):
        load_refcoco("refcocog_umd", refer_copy.root, refer_copy.root / "images", split="testA")


def test_failed_build_leaves_no_cache_and_a_fixed_build_succeeds(refer_copy, tmp_path):
    """The failure comes from the last split, after the others were written."""
    path = refer_copy.root / "refcoco" / "instances.json"
    original = path.read_text()
    instances = json.loads(original)
    last = max((r for r in refer_copy.refs() if r["split"] == "testB"), key=lambda r: r["ref_id"])
    broken = next(a for a in instances["annotations"] if a["id"] == last["ann_id"])
    broken["segmentation"] = "not a polygon"
    refer_copy.save_instances(instances)
    with pytest.raises(ReferFileError, match=rf"instances.json: annotation {last['ann_id']} \(ref {last['ref_id']}\)"):
        refer_copy.load(tmp_path / "cache")
    assert _no_cache_left(tmp_path / "cache")
    path.write_text(original)
    assert len(refer_copy.load(tmp_path / "cache")["testB"]) > 0


def test_split_names_outside_the_scheme_are_refused(refer_copy, tmp_path):
    refs = refer_copy.refs()
    refs[-1]["split"] = "testC"
    refer_copy.save_refs(refs)
    with pytest.raises(ReferFileError, match=r"split names \['testC'\] are not splits of refcoco_unc"):
        refer_copy.load(tmp_path / "cache")


@pytest.mark.parametrize("split", [None, "train"])
def test_refs_without_a_split_of_the_scheme_are_named(refer_copy, tmp_path, split):
    """datasets answered 'Instruction "val" corresponds to no data!', naming no file."""
    refs = refer_copy.refs()
    kept = [r for r in refs if r["split"] != "val"]
    refer_copy.save_refs(kept)
    counts = {name: sum(r["split"] == name for r in kept) for name in ("train", "testA", "testB")}
    found = ", ".join(f"{name}: {n}" for name, n in counts.items())
    with pytest.raises(ReferFileError, match=rf"refs\(unc\)\.p: no ref of split 'val' \(the file holds {found}\); "
                                             r"refcoco_unc's splits are train, val, testA, testB"):
        refer_copy.load(tmp_path / "cache", split=split)


def test_empty_refs_are_named(refer_copy, tmp_path):
    refer_copy.save_refs([])
    with pytest.raises(ReferFileError, match=r"refs\(unc\)\.p: holds no refs; the file is truncated or corrupt"):
        refer_copy.load(tmp_path / "cache")


def test_a_split_whose_refs_are_all_skipped_is_named(refer_copy, tmp_path):
    """Every val ref lost its image in instances.json: counted skips, and then nothing left to build."""
    refs, instances = refer_copy.refs(), refer_copy.instances()
    val = [r for r in refs if r["split"] == "val"]
    lost = {r["image_id"] for r in val}
    instances["images"] = [i for i in instances["images"] if i["id"] not in lost]
    refer_copy.save_instances(instances)
    with pytest.warns(ReferDataWarning), pytest.raises(
            ReferFileError, match=rf"refs\(unc\)\.p \[val\]: none of its {len(val)} refs could be built"):
        refer_copy.load(tmp_path / "cache")
    assert _no_cache_left(tmp_path / "cache")


XMP_ROTATED = (b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
               b'<rdf:Description xmlns:tiff="http://ns.adobe.com/tiff/1.0/" tiff:Orientation="6"/></rdf:RDF></x:xmpmeta>')


def _orientation_options(image_format: str, carrier: str) -> dict:
    from PIL import ExifTags, Image, PngImagePlugin

    if carrier == "exif":
        exif = Image.Exif()
        exif[ExifTags.Base.Orientation] = 6  # "rotate 90° clockwise to display"
        return {"exif": exif}
    if image_format == "PNG":  # Pillow writes no XMP into a PNG itself; an iTXt chunk is where it reads it
        info = PngImagePlugin.PngInfo()
        info.add_itxt("XML:com.adobe.xmp", XMP_ROTATED.decode())
        return {"pnginfo": info}
    return {"xmp": XMP_ROTATED}


@pytest.mark.parametrize("image_format, carrier", [
    ("JPEG", "exif"), ("JPEG", "xmp"), ("PNG", "exif"), ("PNG", "xmp"), ("WEBP", "exif"), ("WEBP", "xmp")])
def test_rotated_image_keeps_its_stored_pixels(refer_copy, tmp_path, image_format, carrier):
    """datasets applies an EXIF (or XMP) orientation on decode, whatever the format; COCO masks follow the
    stored pixels. (The PNG and WebP cases came out rotated, 285x328 beside a 328x285 mask.)"""
    import numpy as np
    from PIL import ExifTags, Image

    ref, path = _first_train_image(refer_copy)
    stored = Image.open(path).convert("RGB")
    quality = {"quality": 95} if image_format == "JPEG" else {"lossless": True} if image_format == "WEBP" else {}
    stored.save(path, image_format, **quality, **_orientation_options(image_format, carrier))  # under its .jpg name
    assert Image.open(path).format == image_format
    assert Image.open(path).getexif().get(ExifTags.Base.Orientation) == 6  # PIL would rotate it
    pixels = np.asarray(Image.open(path).convert("RGB"))  # what the file now stores
    ds = refer_copy.load(tmp_path / "cache", split="train")
    row = ds[list(ds["ref_id"]).index(ref["ref_id"])]
    assert row["image"].size == row["mask"].size == (row["width"], row["height"])
    np.testing.assert_array_equal(np.asarray(row["image"].convert("RGB")), pixels)
