"""The NeMo transform end to end: Dataset.map, set_transform, seeding, placement, caching."""

from __future__ import annotations

import io
import subprocess
import sys
import time

import numpy as np
import pytest
from datasets import Image
from datasets.fingerprint import Hasher
from PIL import Image as PILImage

from nemo_hf import NeMo, load_refcoco, per_sentence
from nemo_hf.mosaic import allowed_cells, grid_layout
from tests.tiny_models import tiny_clip

COLUMNS = ["image", "mask", "sentence", "ref_id", "sent_id", "image_id", "source_image_ids", "target_cell",
           "mosaic_kind"]


@pytest.fixture(scope="module")
def train(refer_tree, tmp_path_factory):
    return load_refcoco("refcoco_unc", refer_tree.root, refer_tree.image_dir, split="train",
                        cache_dir=tmp_path_factory.mktemp("cache"))


@pytest.fixture(scope="module")
def mined(train, tmp_path_factory):
    nemo = NeMo(train, *tiny_clip(0), top_k=6, tau_image=None, cache_dir=str(tmp_path_factory.mktemp("mining")))
    return nemo.mine(train, verbose=False)


def _nemo(train, **settings):
    settings.setdefault("size", 96)
    settings.setdefault("mosaic_prob", 1.0)
    settings.setdefault("top_k", 6)
    return NeMo(train, tau_image=None, **settings)


def _map(ds, nemo, **kwargs):
    return ds.map(nemo, batched=True, batch_size=8, remove_columns=ds.column_names, **kwargs)


def test_map_gives_one_row_per_expression_with_provenance(mined, train):
    out = _map(mined, _nemo(train))
    assert sorted(out.column_names) == sorted(COLUMNS)
    assert len(out) == sum(len(s) for s in mined["sentences"])
    row = out[0]
    assert row["image"].size == (96, 96) and row["mask"].size == (96, 96)
    assert row["mosaic_kind"] == "mined" and len(row["source_image_ids"]) == 4
    assert row["source_image_ids"][row["target_cell"]] == row["image_id"]


def test_map_stores_mosaics_as_fast_lossless_pngs(mined, train):
    """The stored bytes are PNGs written at zlib level 1 (header FLEVEL 0) that decode to the drawn pixels."""
    nemo = _nemo(train)
    out = _map(mined.select(range(4)), nemo).cast_column("image", Image(decode=False))
    drawn = nemo(mined.select(range(4))[:])["image"]
    for stored, picture in zip(out["image"], drawn):
        data = stored["bytes"]
        assert data.startswith(b"\x89PNG")
        idat = data.index(b"IDAT") + 4
        assert data[idat] & 0x0F == 8 and data[idat + 1] >> 6 == 0  # deflate, fastest level
        np.testing.assert_array_equal(np.asarray(PILImage.open(io.BytesIO(data))), np.asarray(picture))


def test_mosaic_prob_zero_gives_the_single_image(mined, train):
    out = _map(mined, _nemo(train, mosaic_prob=0.0))
    assert set(out["mosaic_kind"]) == {"single"}
    sentences = per_sentence(mined)
    for a, b in zip(out.select(range(6)), sentences.select(range(6))):
        expected = np.asarray(b["mask"].resize((96, 96), 0))
        np.testing.assert_array_equal(np.asarray(a["mask"]), expected)
        assert a["source_image_ids"] == [b["image_id"]]


def _rows_with_a_turned_mask():
    """Four 40x30 images; row 2's mask is 30x40 (turned: its image's width and height swapped)."""
    import datasets

    masks = [np.ones((30, 40), bool)] * 4
    masks[2] = np.ones((40, 30), bool)
    return datasets.Dataset.from_dict({
        "image": [PILImage.new("RGB", (40, 30), c) for c in ("red", "green", "blue", "gray")],
        "mask": [PILImage.fromarray(m) for m in masks], "sentences": [["the left one"]] * 4,
        "sent_ids": [[10], [11], [12], [13]], "ref_id": [0, 1, 2, 3], "image_id": [20, 21, 22, 23]})


@pytest.mark.parametrize("mosaic_prob", [0.0, 1.0], ids=["single", "mosaic"])
@pytest.mark.parametrize("access", ["map", "attach"])
def test_a_mask_of_another_size_than_its_image_is_refused_naming_the_row(mosaic_prob, access):
    """The single-image path refused it without naming the row; the mosaic path, drawing the target from
    the pool's shrunk copy, stretched the mask into the cell without a word."""
    rows = _rows_with_a_turned_mask()
    nemo = NeMo(rows, size=64, mosaic_prob=mosaic_prob, random_share=1.0, top_k=3)
    message = r"ref 2 \(sent_id 12\): its mask is 30x40 but its image is 40x30 \(width x height\)"
    with pytest.raises(ValueError, match=message):
        if access == "map":
            rows.map(nemo, batched=True, remove_columns=rows.column_names)
        else:
            nemo.attach(rows)[2]


def test_mask_lives_in_the_target_cell_and_negatives_never_repeat(mined, train):
    out = _map(mined, _nemo(train, grid=3, top_k=9, random_share=1.0))
    boxes = grid_layout(3, 96)
    for row in out:
        ids = row["source_image_ids"]
        assert len(set(ids)) == 9 and ids.count(row["image_id"]) == 1
        mask = np.asarray(row["mask"])
        left, top, right, bottom = boxes[row["target_cell"]]
        outside = mask.copy()
        outside[top:bottom, left:right] = False
        assert not outside.any()


def test_mask_area_is_preserved_up_to_resize_rounding(mined, train):
    out = _map(mined, _nemo(train))
    sentences = per_sentence(mined)
    for a, b in zip(out.select(range(10)), sentences.select(range(10))):
        original = np.asarray(b["mask"]).sum()
        scale = (48 / b["width"]) * (48 / b["height"])
        box = grid_layout(2, 96)[a["target_cell"]]
        assert box.width == box.height == 48
        assert abs(np.asarray(a["mask"]).sum() - original * scale) <= 1.5 * (48 + 48) + 2.25


def test_position_words_choose_the_cell(mined, train):
    out = _map(mined, _nemo(train))
    checked = 0
    for row in out:
        cells = allowed_cells(row["sentence"], 2)
        assert row["target_cell"] in cells
        checked += len(cells) < 4
    assert checked > 5  # the synthetic expressions do use position words


def test_same_seed_and_epoch_repeat_new_epoch_changes(mined, train):
    nemo = _nemo(train, cross_point_jitter=0.2)
    first, again = _map(mined, nemo, load_from_cache_file=False), _map(mined, nemo, load_from_cache_file=False)
    assert first["source_image_ids"] == again["source_image_ids"]
    assert first.data.column("image").equals(again.data.column("image"))
    nemo.set_epoch(1)
    later = _map(mined, nemo)
    assert later["source_image_ids"] != first["source_image_ids"]


def test_num_proc_gives_the_same_rows(mined, train):
    nemo = _nemo(train, mosaic_prob=0.6, random_share=0.5)
    one = _map(mined, nemo, load_from_cache_file=False)
    two = _map(mined, nemo, num_proc=2, load_from_cache_file=False)
    assert one["source_image_ids"] == two["source_image_ids"]
    assert one["mosaic_kind"] == two["mosaic_kind"]
    assert one.data.column("image").equals(two.data.column("image"))
    assert {"single", "random", "mined"} == set(one["mosaic_kind"])


def test_second_map_is_a_cache_hit_and_a_setting_change_is_a_miss(mined, train):
    first = _map(mined, _nemo(train))
    again = _map(mined, _nemo(train))
    assert again._fingerprint == first._fingerprint and again.cache_files == first.cache_files
    changed = _map(mined, _nemo(train, grid=3, top_k=9, random_share=1.0))
    assert changed._fingerprint != first._fingerprint


def test_fingerprint_is_fast_with_a_vit_b_clip_and_stable_across_processes(train):
    import pickle

    from transformers import CLIPConfig, CLIPModel

    nemo = NeMo(train, "openai/clip-vit-base-patch16", top_k=6)
    # as after the first on-the-fly mining: the loaded ViT-B model sits in the NeMo object
    nemo._clip.model, nemo._clip.processor = CLIPModel(CLIPConfig(vision_config={"patch_size": 16})), tiny_clip(0)[1]
    start = time.perf_counter()
    digest = Hasher.hash(nemo)
    assert time.perf_counter() - start < 1.0
    code = "import sys, pickle; from datasets.fingerprint import Hasher; print(Hasher.hash(pickle.loads(sys.stdin.buffer.read())))"
    other = subprocess.run([sys.executable, "-c", code], input=pickle.dumps(nemo), capture_output=True, check=True)
    assert other.stdout.decode().strip() == digest
    assert Hasher.hash(NeMo(train, "openai/clip-vit-base-patch16", top_k=7)) != digest


def test_set_transform_draws_per_access_and_per_epoch(mined, train):
    nemo = _nemo(train)
    ds = nemo.attach(mined)
    epoch0 = [ds[i] for i in range(3, 9)]
    assert sorted(epoch0[0]) == sorted(COLUMNS)
    again = ds[3]  # the same index in the same epoch: the same mosaic
    assert np.array_equal(np.asarray(again["image"]), np.asarray(epoch0[0]["image"]))
    nemo.set_epoch(1)
    epoch1 = [ds[i] for i in range(3, 9)]
    plans = lambda rows: [(r["sentence"], r["source_image_ids"], r["target_cell"]) for r in rows]  # noqa: E731
    assert plans(epoch1) != plans(epoch0)  # the same indices draw anew in a new epoch
    # decoded images (plain with_transform) draw the same plan as undecoded ones (attach)
    plain = mined.with_transform(nemo.transform)
    assert plans([plain[i] for i in range(3, 9)]) == plans(epoch1)


def test_on_the_fly_mining_in_one_map(train, tmp_path):
    nemo = NeMo(train, *tiny_clip(0), top_k=6, tau_image=None, size=64, mosaic_prob=1.0, cache_dir=str(tmp_path))
    out = train.select(range(6)).map(nemo, batched=True, remove_columns=train.column_names)
    pool_ids = set(train["image_id"])
    assert set(out["mosaic_kind"]) == {"mined"}
    assert all(set(ids) <= pool_ids for ids in out["source_image_ids"])


def test_map_without_remove_columns_gives_the_same_rows(mined, train):
    """Rows per object become rows per sentence: datasets would fail on the input columns' lengths."""
    rows, nemo = mined.select(range(8)), _nemo(train, mosaic_prob=0.6, random_share=0.5)
    plain = rows.map(nemo, batched=True, batch_size=4, load_from_cache_file=False)
    removed = _map(rows, nemo, load_from_cache_file=False)
    assert len(plain) == sum(len(s) for s in rows["sentences"]) > len(rows)
    assert sorted(plain.column_names) == sorted(COLUMNS)
    assert all(plain.data.column(c).equals(removed.data.column(c)) for c in COLUMNS)
    # rows already per sentence keep the columns NeMo does not write, as map does
    view = per_sentence(rows)
    kept = view.map(nemo, batched=True, batch_size=4, load_from_cache_file=False)
    assert kept["bbox"] == view["bbox"] and kept["source_image_ids"] == removed["source_image_ids"]
    batch = rows[:4]  # a caller's own batch is left as it was
    nemo(batch)
    assert sorted(batch) == sorted(rows.column_names)


def test_attaching_unmined_rows_fails_at_once_naming_the_fix(mined, train):
    nemo = NeMo(train, *tiny_clip(0), top_k=6, size=64, mosaic_prob=1.0)
    with pytest.raises(ValueError, match=r"no negative_image_ids.*run ds = nemo\.mine\(ds\) first"):
        nemo.attach(train)  # before: fine here, then an error at the first row a DataLoader drew
    with pytest.raises(ValueError, match=r"run ds = nemo\.mine\(ds\) first"):
        train.with_transform(nemo.transform)[0]
    assert nemo.attach(mined)[0]["mosaic_kind"] == "mined"
    assert NeMo(train, random_share=1.0, size=64).attach(train)[0]["mosaic_kind"] in ("single", "random")


def test_a_dataset_dict_is_refused_naming_the_split_to_pass(train, tmp_path):
    from datasets import DatasetDict

    splits = DatasetDict({"train": train, "val": train})
    with pytest.raises(TypeError, match=r"DatasetDict of splits \['train', 'val'\]: pass one split, e\.g\. ds\['train'\]"):
        NeMo(splits)
    nemo = NeMo(train, *tiny_clip(0), top_k=6, cache_dir=str(tmp_path))
    for call in (nemo.mine, nemo.attach):
        with pytest.raises(TypeError, match=r"pass one split, e\.g\. ds\['train'\]"):
            call(splits)


def test_unbatched_map_is_refused_clearly(mined, train):
    with pytest.raises(TypeError, match="batched=True"):
        mined.map(_nemo(train))


def test_too_few_mined_candidates_name_the_image(mined, train):
    message = r"mined mosaic of image \d+ there are only 6 candidate negatives, but a 3x3 mosaic needs 8"
    with pytest.raises(ValueError, match=message):
        _map(mined, _nemo(train, grid=3, top_k=9))


def test_save_mosaic_grid_draws_a_png(mined, train, tmp_path):
    from PIL import Image

    from nemo_hf.viz import save_mosaic_grid

    out = _map(mined.select(range(4)), _nemo(train))
    path = save_mosaic_grid(out, tmp_path / "mosaics.png", n=8)
    sheet = Image.open(path)
    assert sheet.size[0] == 4 * 256 and sheet.size[1] > 256
    assert len(set(np.asarray(sheet.convert("L")).ravel().tolist())) > 10  # not a blank page


def test_different_unnamed_clip_models_fingerprint_differently(train):
    """On-the-fly mining output depends on the model, so the .map cache key must too."""
    first, second = NeMo(train, *tiny_clip(0), top_k=6), NeMo(train, *tiny_clip(1), top_k=6)
    assert Hasher.hash(first) != Hasher.hash(second)
    assert Hasher.hash(first) == Hasher.hash(NeMo(train, *tiny_clip(0), top_k=6))


def test_per_sentence_view_of_mined_data_keeps_each_sentences_negatives(mined, train):
    view = per_sentence(mined)
    expected = [ids for row in mined["negative_image_ids"] for ids in row]
    assert view["negative_image_ids"] == expected
    out = _map(view, _nemo(train))  # per-sentence rows map like per-ref rows
    by_ref = _map(mined, _nemo(train))
    assert out["source_image_ids"] == by_ref["source_image_ids"]


def test_negatives_from_shrunk_copies_keep_the_plan_and_look_the_same(mined, train):
    shrunk, original = _nemo(train, size=96), _nemo(train, size=96, thumbnail_cells=False)
    a, b = _map(mined.select(range(6)), shrunk), _map(mined.select(range(6)), original)
    assert a["source_image_ids"] == b["source_image_ids"] and a["target_cell"] == b["target_cell"]
    for x, y in zip(a, b):
        assert np.array_equal(np.asarray(x["mask"]), np.asarray(y["mask"]))
        difference = np.abs(np.asarray(x["image"], np.float64) - np.asarray(y["image"], np.float64))
        assert difference.mean() < 2.0
    assert a.data.column("image") != b.data.column("image")  # the setting is part of the cache key


def _rows_as_list(rows):
    return rows  # a module-level collate_fn: spawned workers import it by name


def _plans_through_a_loader(ds, nemo, epochs, **loader_kwargs):
    """(sentence, source ids, target cell) per sample and epoch, drawn in DataLoader workers."""
    from torch.utils.data import DataLoader

    loader = DataLoader(ds, batch_size=4, num_workers=2, collate_fn=_rows_as_list, **loader_kwargs)
    plans = []
    for epoch in epochs:
        nemo.set_epoch(epoch)
        plans.append([(r["sentence"], r["source_image_ids"], r["target_cell"]) for batch in loader for r in batch])
    return plans


@pytest.mark.parametrize("context", ["fork", pytest.param("spawn", marks=pytest.mark.slow)])
def test_persistent_workers_follow_set_epoch(mined, train, context):
    nemo = _nemo(train, mosaic_prob=0.5)
    ds = nemo.attach(mined.select(range(12)))
    expected = []
    for epoch in (0, 1, 2):
        nemo.set_epoch(epoch)
        expected.append([(r["sentence"], r["source_image_ids"], r["target_cell"]) for r in ds])
    assert expected[0] != expected[1] != expected[2]
    nemo.set_epoch(0)
    got = _plans_through_a_loader(ds, nemo, (0, 1, 2), persistent_workers=True, multiprocessing_context=context)
    assert got == expected
