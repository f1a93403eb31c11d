"""The builder's ground-truth columns: equal to the files, None for real data, kept per sentence.

"Real" data here is a synthetic tree with the ground-truth keys removed from its files:
exactly what a RefCOCO download looks like to the builder.
"""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import datasets
import pytest

from nemo_hf.data import ReferFileError, load_refcoco, per_sentence
from nemo_hf.data.ground_truth import GROUND_TRUTH_COLUMNS, scene_frames, sentence_meanings
from nemo_hf.nemo.audit import GroundTruth
from nemo_hf.synthetic import SyntheticRefer, make_refer_dataset

datasets.disable_progress_bars()
TRUTH_KEYS = ("attributes", "needs", "meaning")


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> SyntheticRefer:
    return make_refer_dataset(tmp_path_factory.mktemp("gt") / "refer", 16, seed=2, datasets=("refcoco", "grefcoco"))


def _strip(value):
    if isinstance(value, dict):
        return {k: _strip(v) for k, v in value.items() if k not in TRUTH_KEYS}
    return [_strip(v) for v in value] if isinstance(value, list) else value


def _rewrite(root: Path, change) -> None:
    """Apply ``change`` to every refs file and instances.json of a copied tree."""
    for path in root.glob("*/*"):
        if path.name == "instances.json" or path.name.startswith("grefs"):
            path.write_text(json.dumps(change(json.loads(path.read_text()))))
        elif path.suffix == ".p":
            path.write_bytes(pickle.dumps(change(pickle.loads(path.read_bytes())), protocol=2))


@pytest.fixture(scope="module")
def real_looking(tree: SyntheticRefer, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("real") / "refer"
    shutil.copytree(tree.root, root)
    _rewrite(root, _strip)
    return root


def _load(root: Path, name: str, cache: Path, split: str | None = "train"):
    return load_refcoco(name, root, root / "images" / "train2014", split=split, cache_dir=cache)


@pytest.mark.parametrize(("name", "folder", "file"), [("refcoco_unc", "refcoco", "refs(unc).p"),
                                                        ("grefcoco_unc", "grefcoco", "grefs(unc).json")])
def test_columns_hold_what_the_files_hold(tree: SyntheticRefer, tmp_path: Path, name: str, folder: str, file: str):
    ds = _load(tree.root, name, tmp_path)
    path = tree.data_dir(folder) / file
    listed = json.loads(path.read_text()) if file.endswith("json") else pickle.loads(path.read_bytes())
    refs = {r["ref_id"]: r for r in listed}
    instances = json.loads((tree.data_dir(folder) / "instances.json").read_text())
    anns = {a["id"]: a for a in instances["annotations"]}
    names = {c["id"]: c["name"] for c in instances["categories"]}
    one_target = 0
    for row in ds.remove_columns(["image", "mask"]):
        ref = refs[row["ref_id"]]
        assert row["needs"] == [s["needs"] for s in ref["sentences"]]
        assert [json.loads(m) for m in row["meaning"]] == [s["meaning"] for s in ref["sentences"]]
        targets = ref["ann_id"] if isinstance(ref["ann_id"], list) else [ref["ann_id"]]
        if len(targets) == 1 and targets != [-1]:
            attributes = anns[targets[0]]["attributes"]
            assert row["target_attributes"] == {"colour": attributes["colour"], "size": attributes["size"]}
            one_target += 1
        else:
            assert row["target_attributes"] is None
        objects = row["scene_objects"]
        image_anns = [a for a in instances["annotations"] if a["image_id"] == row["image_id"]]
        assert objects["ann_id"] == [a["id"] for a in image_anns]
        assert objects["category"] == [names[a["category_id"]] for a in image_anns]
        assert [[x, y] for x, y in zip(objects["x"], objects["y"])] == [a["attributes"]["centre"] for a in image_anns]
        assert objects["size"] == [a["attributes"]["size"] for a in image_anns]
    assert one_target > 10


@pytest.mark.parametrize("name", ["refcoco_unc", "grefcoco_unc"])
def test_real_data_gets_the_same_schema_with_none(tree: SyntheticRefer, real_looking: Path, tmp_path: Path, name: str):
    synthetic, real = _load(tree.root, name, tmp_path / "s"), _load(real_looking, name, tmp_path / "r")
    assert real.features == synthetic.features
    rows = real.select_columns(["sentences", *GROUND_TRUTH_COLUMNS]).to_list()
    for row in rows:
        assert row["target_attributes"] is None and row["scene_objects"] is None
        assert row["needs"] == row["meaning"] == [None] * len(row["sentences"])
    view = per_sentence(real)
    assert view.features["needs"] == datasets.List(datasets.Value("string"))
    assert set(view["needs"]) == {None} and set(view["meaning"]) == {None}
    with pytest.raises(ValueError, match="only synthetic"):
        scene_frames(real)


def test_the_per_sentence_view_keeps_each_sentences_own_truth(tree: SyntheticRefer, tmp_path: Path) -> None:
    ds = _load(tree.root, "refcoco_unc", tmp_path)
    view = per_sentence(ds)
    flat_needs = [n for row in ds["needs"] for n in row]
    flat_meaning = [m for row in ds["meaning"] for m in row]
    assert view["needs"] == flat_needs and view["meaning"] == flat_meaning
    assert view.features["meaning"] == datasets.Value("string")
    # the image's objects stay one value per row, however many sentences it has
    assert view.features["scene_objects"] == ds.features["scene_objects"]
    assert sentence_meanings(view) == sentence_meanings(ds)


def test_a_parquet_copy_serves_the_ground_truth_alone(tree: SyntheticRefer, tmp_path: Path) -> None:
    ds = _load(tree.root, "refcoco_unc", tmp_path)
    ds.to_parquet(tmp_path / "train.parquet")
    copy = datasets.Dataset.from_parquet(str(tmp_path / "train.parquet"))
    original, again = scene_frames(ds), scene_frames(copy)
    assert again.image_ids.tolist() == original.image_ids.tolist()
    assert (again.x == original.x).all() and (again.category == original.category).all()
    truth = GroundTruth.from_datasets(copy)
    assert len(truth.meanings) == sum(len(s) for s in ds["sentences"]) and len(truth.frames) == len(set(ds["image_id"]))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda s: {**s, "needs": "size"}, "needs"),
        (lambda s: {**s, "needs": ["size", "shape"]}, "needs"),
        (lambda s: {**s, "meaning": {**s["meaning"], "row": "up"}}, "row"),
        (lambda s: {**s, "meaning": ["red"]}, "meaning"),
    ],
)
def test_malformed_sentence_truth_is_named(tree: SyntheticRefer, tmp_path: Path, change, message: str) -> None:
    root = tmp_path / "refer"
    shutil.copytree(tree.root, root)
    path = root / "refcoco" / "refs(unc).p"
    refs = pickle.loads(path.read_bytes())
    refs[0]["sentences"][0] = change(refs[0]["sentences"][0])
    path.write_bytes(pickle.dumps(refs, protocol=2))
    with pytest.raises(ReferFileError, match=rf"ref {refs[0]['ref_id']}: .*{message}"):
        _load(root, "refcoco_unc", tmp_path / "cache", split=None)


def test_malformed_attributes_are_named(tree: SyntheticRefer, tmp_path: Path) -> None:
    root = tmp_path / "refer"
    shutil.copytree(tree.root, root)
    path = root / "refcoco" / "instances.json"
    instances = json.loads(path.read_text())
    instances["annotations"][0]["attributes"]["centre"] = [1.0, float("nan")]
    path.write_text(json.dumps(instances))
    with pytest.raises(ReferFileError, match=rf"annotation {instances['annotations'][0]['id']}: attributes"):
        _load(root, "refcoco_unc", tmp_path / "cache", split=None)
