"""The RefCOCO builder on synthetic refer-format trees, checked against independent readings."""

from __future__ import annotations

import gc
import json
import os
import pickle
from collections import Counter

import datasets
import numpy as np
import pytest
from pycocotools import mask as mask_utils

from nemo_hf import __version__, load_refcoco, per_sentence
from nemo_hf.data import VARIANTS, RefCOCO, stats_table
from nemo_hf.data.configs import card_fields
from nemo_hf.hub.cards import render_dataset_card
from nemo_hf.hub.dataset_repos import write_parquet


def _raw_refs(tree, name):
    variant = VARIANTS[name]
    path = tree.data_dir(variant.folder) / variant.refs_file
    return json.loads(path.read_text()) if path.suffix == ".json" else pickle.loads(path.read_bytes())


def _instances(tree, name):
    return json.loads((tree.data_dir(VARIANTS[name].folder) / "instances.json").read_text())


def _independent_mask(segmentations, height, width):
    """Union of every polygon/RLE part, decoded one by one with pycocotools."""
    union = np.zeros((height, width), dtype=bool)
    for segmentation in segmentations:
        if isinstance(segmentation, list):
            for polygon in segmentation:
                rle = mask_utils.frPyObjects([polygon], height, width)
                union |= mask_utils.decode(rle)[..., 0].astype(bool)
        elif isinstance(segmentation["counts"], list):
            union |= mask_utils.decode(mask_utils.frPyObjects(segmentation, height, width)).astype(bool)
        else:
            rle = {"size": segmentation["size"], "counts": segmentation["counts"].encode()}
            union |= mask_utils.decode(rle).astype(bool)
    return union


WRITER_BATCH = 4  # rows per Arrow batch in the module's builds: every split spans several


@pytest.fixture(scope="module")
def built(refer_tree, tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(RefCOCO, "DEFAULT_WRITER_BATCH_SIZE", WRITER_BATCH)
        return {
            name: load_refcoco(name, refer_tree.root, refer_tree.image_dir, cache_dir=cache)
            for name in VARIANTS
        }


@pytest.mark.parametrize("name", list(VARIANTS))
def test_every_config_matches_the_raw_files(refer_tree, built, name):
    """Every row of every split, each column against the raw files, each mask against pycocotools."""
    ds, refs = built[name], _raw_refs(refer_tree, name)
    instances = _instances(refer_tree, name)
    annotations = {a["id"]: a for a in instances["annotations"]}
    images = {i["id"]: i for i in instances["images"]}
    category_names = {c["id"]: c["name"] for c in instances["categories"]}
    assert list(ds) == list(VARIANTS[name].splits)
    assert {s: len(ds[s]) for s in ds} == dict(Counter(r["split"] for r in refs))
    assert max(len(part) for part in ds.values()) > 2 * WRITER_BATCH
    by_id = {r["ref_id"]: r for r in refs}
    for split in ds:
        part = ds[split]
        ref_ids = part["ref_id"]
        assert list(ref_ids) == sorted(ref_ids)
        for row in part:
            ref = by_id[row["ref_id"]]
            assert row["sentences"] == [s["raw"].strip() for s in ref["sentences"]]
            assert row["sent_ids"] == [s["sent_id"] for s in ref["sentences"]]
            targets = [a for a in (ref["ann_id"] if isinstance(ref["ann_id"], list) else [ref["ann_id"]]) if a >= 0]
            image = images[ref["image_id"]]
            assert (row["image_id"], row["width"], row["height"]) == (image["id"], image["width"], image["height"])
            assert row["ann_id"] == (targets[0] if targets else -1)
            category_id = annotations[targets[0]]["category_id"] if targets else -1
            assert (row["category_id"], row["category"]) == (category_id, category_names.get(category_id, ""))
            expected = _independent_mask(
                [annotations[a]["segmentation"] for a in targets], row["height"], row["width"])
            mask = np.asarray(row["mask"])
            assert row["mask"].mode == "1" and mask.dtype == bool
            np.testing.assert_array_equal(mask, expected)
            assert row["image"].size == (row["width"], row["height"])
            if len(targets) == 1:
                expected_bbox = annotations[targets[0]]["bbox"]
            elif expected.any():
                ys, xs = np.nonzero(expected)
                expected_bbox = [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]
            else:
                expected_bbox = [0, 0, 0, 0]
            assert row["bbox"] == pytest.approx(expected_bbox, rel=1e-6)
            categories = {annotations[a]["category_id"] for a in targets}
            distractors = sum(1 for a in annotations.values() if a["image_id"] == row["image_id"]
                              and a["id"] not in targets and a["category_id"] in categories)
            assert row["distractors"] == distractors
            if VARIANTS[name].generalized:
                assert row["ann_ids"] == targets


def test_build_leaves_the_garbage_collector_as_it_was(refer_tree, tmp_path):
    """The build pauses the collector while parsing and freezes the parsed inputs meanwhile."""
    load_refcoco("refcoco_unc", refer_tree.root, refer_tree.image_dir, cache_dir=tmp_path, split="val")
    assert gc.isenabled() and gc.get_freeze_count() == 0


def test_grefcoco_has_multi_and_no_target_rows(built):
    train = built["grefcoco_unc"]["train"]
    counts = Counter(len(ids) for ids in train["ann_ids"])
    assert counts[0] > 0 and any(n > 1 for n in counts)
    empty = train.filter(lambda row: len(row["ann_ids"]) == 0)
    assert not any(np.asarray(m).any() for m in empty["mask"])
    assert set(empty["ann_id"]) == {-1}


def test_split_sizes_are_described(built):
    info = built["refcoco_unc"]["train"].info
    assert "42,404" in info.description and "120,624" in info.description
    table = stats_table(built["refcoco_unc"])
    assert table.splitlines()[2].startswith(f"| train | {len(built['refcoco_unc']['train']):,} |")


def test_per_sentence_view(built):
    ds = built["refcocog_umd"]["val"]
    view = per_sentence(ds)
    assert len(view) == sum(len(s) for s in ds["sentences"])
    assert view.column_names[:5] == ["image", "mask", "sentence", "sent_id", "ref_id"]
    pairs = list(zip(view["ref_id"], view["sent_id"]))
    assert len(set(pairs)) == len(pairs)
    expected = {(r, i): s for r, ids, ss in zip(ds["ref_id"], ds["sent_ids"], ds["sentences"]) for i, s in zip(ids, ss)}
    assert {p: s for p, s in zip(pairs, view["sentence"])} == expected
    assert isinstance(view[0]["image"], __import__("PIL").Image.Image)


def test_per_sentence_splits_exactly_the_columns_with_one_entry_per_sentence():
    ds = datasets.Dataset.from_dict({
        "sentences": [["a", "b"], ["c"]], "sent_ids": [[0, 1], [2]], "ref_id": [5, 6],
        "scores": [[0.5, 0.1], [0.9]],  # one per sentence: split
        "ann_ids": [[7, 8], [9]],  # as long, but the ref's objects: kept whole
        "tags": [["x"], ["y"]],  # one per ref: kept whole
    })
    view = per_sentence(ds)
    assert view["sentence"] == ["a", "b", "c"]
    assert view["scores"] == pytest.approx([0.5, 0.1, 0.9])
    assert view["ann_ids"] == [[7, 8], [7, 8], [9]]
    assert view["tags"] == [["x"], ["x"], ["y"]]


def test_streaming_gives_the_same_rows(refer_tree, built):
    streamed = load_refcoco("refcoco_unc", refer_tree.root, refer_tree.image_dir, split="val", streaming=True)
    assert isinstance(streamed, datasets.IterableDataset)
    built_val = built["refcoco_unc"]["val"]
    rows = list(streamed)
    assert [r["ref_id"] for r in rows] == built_val["ref_id"]
    for streamed_row, row in zip(rows[:5], built_val):
        np.testing.assert_array_equal(np.asarray(streamed_row["mask"]), np.asarray(row["mask"]))
        assert streamed_row["sentences"] == row["sentences"]


def test_second_load_is_a_cache_hit_and_version_changes_the_key(refer_tree, tmp_path, monkeypatch):
    kwargs = dict(config_name="refcoco_unc", data_dir=str(refer_tree.root), image_dir=str(refer_tree.image_dir),
                  cache_dir=str(tmp_path))
    first = RefCOCO(**kwargs)
    first.download_and_prepare()
    again = RefCOCO(**kwargs)
    assert again.cache_dir == first.cache_dir
    monkeypatch.setattr("nemo_hf.data.builder.__version__", __version__ + ".post1")
    assert RefCOCO(**kwargs).cache_dir != first.cache_dir


def test_parquet_round_trip(built, tmp_path):
    ds = built["refcoco_unc"]
    card = render_dataset_card(repo_id="me/refcoco", config_name="refcoco_unc",
                               stats={"refcoco_unc": stats_table(ds)}, **card_fields("refcoco_unc"))
    write_parquet(ds, tmp_path, "refcoco_unc", card=card, rows_per_shard=7)
    shards = sorted(p.name for p in (tmp_path / "refcoco_unc").glob("train-*.parquet"))
    assert len(shards) == -(-len(ds["train"]) // 7) and shards[0].endswith(f"-of-{len(shards):05d}.parquet")
    back = datasets.load_dataset(
        "parquet", data_files={s: str(tmp_path / "refcoco_unc" / f"{s}-*.parquet") for s in ds},
        cache_dir=str(tmp_path / "hf_cache"))
    assert set(back) == set(ds)
    for split in ds:
        original, loaded = ds[split], back[split]
        assert loaded.features == original.features
        raw_original = original.cast_column("image", datasets.Image(decode=False))
        raw_loaded = loaded.cast_column("image", datasets.Image(decode=False))
        for a, b in zip(raw_original, raw_loaded):
            assert b["image"]["bytes"] == open(a["image"]["path"], "rb").read()  # embedded, not a path
            assert {k: v for k, v in a.items() if k != "image"} == {k: v for k, v in b.items() if k != "image"}
    # the folder is itself a loadable Hub-layout dataset
    local = datasets.load_dataset(str(tmp_path), "refcoco_unc", cache_dir=str(tmp_path / "hf_cache2"))
    assert len(local["val"]) == len(ds["val"])
    readme = (tmp_path / "README.md").read_text()
    assert "config_name: refcoco_unc" in readme and "Kazemzadeh" in readme


def test_num_proc_builds_the_same_tables(refer_tree, built, tmp_path, monkeypatch):
    """Every column of every row, bytes for bytes (masks' PNGs, images' paths or embedded bytes)."""
    monkeypatch.setattr("nemo_hf.data.builder._REFS_PER_SHARD", 5)  # several shards per split
    parallel = load_refcoco("refcoco_unc", refer_tree.root, refer_tree.image_dir,
                            cache_dir=tmp_path, num_proc=2)
    assert list(parallel) == list(built["refcoco_unc"])
    for split, part in built["refcoco_unc"].items():
        assert parallel[split].features == part.features
        assert parallel[split].data.table.equals(part.data.table), split


@pytest.mark.parametrize("change", ["size", "mtime"])
def test_a_replaced_instances_file_is_built_again(refer_copy, tmp_path, change):
    """Same name, other content: a new size with the old mtime, or the old size with a new mtime."""
    cache = tmp_path / "cache"
    refer_copy.save_instances(refer_copy.instances())  # in the formatting of the rewrite below
    before = refer_copy.load(cache, split="val")["category"]
    path = refer_copy.instances_path
    old = path.stat()
    instances = refer_copy.instances()
    renamed = {c["name"]: c["name"][::-1] if change == "mtime" else c["name"] + "!" for c in instances["categories"]}
    for category in instances["categories"]:
        category["name"] = renamed[category["name"]]
    refer_copy.save_instances(instances)
    assert (path.stat().st_size == old.st_size) == (change == "mtime")
    mtime = old.st_mtime_ns + (10**9 if change == "mtime" else 0)
    os.utime(path, ns=(old.st_atime_ns, mtime))
    after = refer_copy.load(cache, split="val")["category"]
    assert after == [renamed[name] for name in before] != before
