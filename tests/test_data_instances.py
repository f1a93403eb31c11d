"""The builder's ``instances`` column: every object of the row's image, against pycocotools."""

from __future__ import annotations

import json
import pickle

import datasets
import numpy as np
import pytest
from pycocotools import mask as mask_utils

from nemo_hf import load_refcoco, per_sentence
from nemo_hf.data import VARIANTS, RefCOCO, ReferDataWarning
from nemo_hf.data.instances import decode_instances, empty_rle


def _raw(tree, name):
    variant = VARIANTS[name]
    folder = tree.data_dir(variant.folder)
    refs_path = folder / variant.refs_file
    refs = json.loads(refs_path.read_text()) if refs_path.suffix == ".json" else pickle.loads(refs_path.read_bytes())
    return refs, json.loads((folder / "instances.json").read_text())


def _pycocotools_mask(segmentation, height, width):
    """Union of the parts, each decoded by pycocotools on its own."""
    union = np.zeros((height, width), dtype=bool)
    if isinstance(segmentation, list):
        for polygon in segmentation:
            union |= mask_utils.decode(mask_utils.frPyObjects([polygon], height, width))[..., 0].astype(bool)
    elif isinstance(segmentation["counts"], list):
        union |= mask_utils.decode(mask_utils.frPyObjects(segmentation, height, width)).astype(bool)
    else:
        union |= mask_utils.decode({"size": segmentation["size"], "counts": segmentation["counts"].encode()}).astype(bool)
    return union


@pytest.fixture(scope="module")
def built(refer_tree, tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("nemo_hf.data.builder._REFS_PER_SHARD", 5)  # several shards per split: the cache is per shard
        return {name: load_refcoco(name, refer_tree.root, refer_tree.image_dir, cache_dir=cache) for name in VARIANTS}


@pytest.mark.parametrize("name", list(VARIANTS))
def test_every_row_lists_every_object_of_its_image(refer_tree, built, name):
    _, instances = _raw(refer_tree, name)
    by_image: dict[int, list[dict]] = {}
    for annotation in instances["annotations"]:
        by_image.setdefault(annotation["image_id"], []).append(annotation)
    unreferred = 0
    for part in built[name].values():
        assert part.features["instances"] == built["refcoco_unc"]["train"].features["instances"]  # one schema
        for row in part:
            expected = sorted(by_image[row["image_id"]], key=lambda a: a["id"])
            entries = row["instances"]
            assert [e["ann_id"] for e in entries] == [a["id"] for a in expected]
            assert [e["category_id"] for e in entries] == [a["category_id"] for a in expected]
            targets = row["ann_ids"] if "ann_ids" in row else [row["ann_id"]]
            assert set(targets) <= {e["ann_id"] for e in entries}
            unreferred += len(entries) - len(targets)
            for entry, annotation in zip(entries, expected):
                truth = _pycocotools_mask(annotation["segmentation"], row["height"], row["width"])
                decoded = mask_utils.decode({"size": [row["height"], row["width"]], "counts": entry["rle"]})
                np.testing.assert_array_equal(decoded.astype(bool), truth)
            # the collator's checked decoder reads them the same, and the target's entry is the row's mask
            masks = decode_instances(entries, row["height"], row["width"])
            if len(targets) == 1:
                np.testing.assert_array_equal(masks[[e["ann_id"] for e in entries].index(targets[0])],
                                              np.asarray(row["mask"]))
    assert unreferred > 0  # the images hold objects no expression refers to


def test_per_sentence_gives_each_sentence_its_images_objects(built):
    ds = built["refcocog_umd"]["val"]
    view = per_sentence(ds)
    by_ref = dict(zip(ds["ref_id"], ds["instances"]))
    assert view.features["instances"] == ds.features["instances"]
    assert all(row["instances"] == by_ref[row["ref_id"]] for row in view)


def test_per_sentence_never_splits_instances_whose_count_equals_the_sentences():
    instances = [[{"ann_id": 1, "category_id": 1, "rle": "d0"}, {"ann_id": 2, "category_id": 1, "rle": "d0"}]]
    ds = datasets.Dataset.from_dict({"sentences": [["a", "b"]], "sent_ids": [[0, 1]], "ref_id": [5],
                                     "instances": instances})
    assert per_sentence(ds)["instances"] == instances * 2


def test_without_instances_the_column_is_null_and_the_rest_identical(refer_tree, built, tmp_path):
    plain = load_refcoco("refcoco_unc", refer_tree.root, refer_tree.image_dir, cache_dir=tmp_path,
                         with_instances=False)
    for split, part in built["refcoco_unc"].items():
        assert plain[split].features == part.features
        assert set(plain[split]["instances"]) == {None}
        assert plain[split].remove_columns("instances").data.table.equals(part.remove_columns("instances").data.table)


def test_the_schema_is_part_of_the_cache_key(refer_tree, tmp_path, monkeypatch):
    kwargs = {"config_name": "refcoco_unc", "data_dir": str(refer_tree.root),
              "image_dir": str(refer_tree.image_dir), "cache_dir": str(tmp_path)}
    before = RefCOCO(**kwargs).cache_dir
    monkeypatch.setattr("nemo_hf.data.builder.INSTANCES_FEATURE", datasets.List({"ann_id": datasets.Value("int64")}))
    assert RefCOCO(**kwargs).cache_dir != before


def test_unusable_objects_are_counted_and_stored_empty(refer_copy, tmp_path):
    """Objects no expression refers to were never read before the column existed: a bad one
    is counted, not fatal (a row's target still stops the build, as before)."""
    refs, instances = refer_copy.refs(), refer_copy.instances()
    referred = {r["ann_id"] for r in refs}
    train_images = {r["image_id"] for r in refs if r["split"] == "train"}
    spare = [a for a in instances["annotations"] if a["id"] not in referred and a["image_id"] in train_images]
    unreadable, empty, partly = spare[:3]
    unreadable["segmentation"] = "not a polygon"
    empty["segmentation"] = [[1, 2, 3]]
    partly["segmentation"] = [[1, 2, 3], [0, 0, 4, 0, 4, 4, 0, 4]]
    instances["annotations"].reverse()  # the file's order is not the column's
    refer_copy.save_instances(instances)
    with pytest.warns(ReferDataWarning, match=r"\[train\]: instances column: 2 objects lost malformed polygon parts, "
                                              r"1 objects have an unreadable segmentation, 2 objects have nothing"):
        ds = refer_copy.load(tmp_path / "cache", split="train")
    assert all([e["ann_id"] for e in row] == sorted(e["ann_id"] for e in row) for row in ds["instances"])
    entries = {e["ann_id"]: (e["rle"], row["height"], row["width"]) for row in ds for e in row["instances"]}
    for annotation in (unreadable, empty):
        rle, height, width = entries[annotation["id"]]
        assert rle == empty_rle(height, width) and not mask_utils.decode({"size": [height, width], "counts": rle}).any()
    rle, height, width = entries[partly["id"]]
    assert int(mask_utils.area({"size": [height, width], "counts": rle})) == 16
