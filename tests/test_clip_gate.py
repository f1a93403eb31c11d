"""The CLIP gate: what a CLIP's text→image cosines tell apart, checked against brute-force counts.

The AUC is compared with counting every (positive, negative) pair; embeddings built to
read one attribute score 1 on it and chance on another; and a real CLIP's readings on a
synthetic pool equal a brute-force recount from the dataset's own columns, so the sentences,
meanings and pool images are lined up as the miner lines them up.
"""

from __future__ import annotations

import json

import datasets
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nemo_hf.data import load_refcoco
from nemo_hf.data.meaning import SceneObject, make_meaning
from nemo_hf.experiment.clip_gate import GATES, _auc, attribute_aucs, clip_reading, passes
from nemo_hf.mining.mine import mining_embeddings
from nemo_hf.synthetic import FAIR_WORLD, make_refer_dataset

datasets.disable_progress_bars()


def _pairs_auc(scores: np.ndarray, positive: np.ndarray) -> float:
    pos, neg = scores[positive], scores[~positive]
    return float(np.mean([1.0 if p > n else 0.5 if p == n else 0.0 for p in pos for n in neg]))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 5), st.booleans()), min_size=1, max_size=30))
def test_the_auc_is_the_share_of_pairs_ranked_right_with_ties_half(pairs) -> None:
    scores = np.array([float(s) for s, _ in pairs])  # few distinct values: many ties
    positive = np.array([p for _, p in pairs])
    if positive.all() or not positive.any():
        assert _auc(scores, positive) is None
    else:
        assert _auc(scores, positive) == pytest.approx(_pairs_auc(scores, positive))


def _one_hot(index: int, size: int = 4) -> np.ndarray:
    v = np.zeros(size)
    v[index] = 1.0
    return v


def test_embeddings_that_read_category_only_pass_category_and_sit_at_chance_on_colour() -> None:
    categories, colours = ("ring", "star"), ("red", "blue")
    objects = [[SceneObject(cat, col, "small", 5, 5)] for cat in categories for col in colours for _ in range(3)]
    pool = np.stack([_one_hot(categories.index(image[0].category)) for image in objects])
    meanings = [make_meaning(category=cat, colour=col) for cat in categories for col in colours]
    text = np.stack([_one_hot(categories.index(m["category"])) for m in meanings])
    reading = attribute_aucs(text, pool, meanings, objects, own_col=np.full(len(meanings), -1))
    assert reading["category"] == 1.0 and reading["colour"] == 0.5
    assert reading["size_given_category_colour"] is None and reading["own_image_r1"] is None
    assert passes(reading) == {"category": True, "colour": False, "size_given_category_colour": False}


def test_size_is_judged_among_images_of_the_stated_category_and_colour_and_the_own_image_is_left_out() -> None:
    objects = [[SceneObject("ring", "red", "small", 5, 5)], [SceneObject("ring", "red", "large", 5, 5)],
               [SceneObject("ring", "red", "small", 5, 5)], [SceneObject("star", "blue", "small", 5, 5)]]
    meanings = [make_meaning(category="ring", colour="red", size="small")]
    # scores: the blue star (never among the size split) scores highest, then the own image, the large ring, the small
    pool = np.array([[0.0, 0.9], [0.0, 0.5], [0.0, 0.3], [0.0, 1.0]])
    text = np.array([[0.0, 1.0]])
    reading = attribute_aucs(text, pool, meanings, objects, own_col=np.array([0]))
    # size split without the own image: small ring (0.3) against large ring (0.5): wrong way round
    assert reading["size_given_category_colour"] == 0.0
    assert reading["own_image_r1"] == 0.0 and reading["chance_r1"] == 0.25  # the star beats the own image
    assert attribute_aucs(text, pool, meanings, objects, own_col=np.array([-1]))["size_given_category_colour"] == 0.5


@pytest.fixture(scope="module")
def pool(tmp_path_factory: pytest.TempPathFactory) -> datasets.Dataset:
    work = tmp_path_factory.mktemp("gate")
    tree = make_refer_dataset(work / "refer", 40, seed=3, datasets=("refcoco",), image_size=(160, 120), **FAIR_WORLD)
    return load_refcoco("refcoco_unc", tree.root, tree.image_dir, split="train", cache_dir=work / "cache")


def test_a_clips_reading_of_a_pool_equals_a_brute_force_recount_from_the_rows(pool: datasets.Dataset,
                                                                              tmp_path) -> None:
    reading = clip_reading(pool, "nemo-hf/synthetic-clip", cache_dir=str(tmp_path))
    found = mining_embeddings(pool, pool, "nemo-hf/synthetic-clip", cache_dir=str(tmp_path))
    images = {}
    for row in pool:
        objs = row["scene_objects"]
        images[row["image_id"]] = list(zip(objs["category"], objs["colour"], objs["size"], strict=True))
    meanings = [json.loads(m) for row in pool for m in row["meaning"]]
    column = {int(image_id): c for c, image_id in enumerate(found.pool_ids)}
    expected = {name: [] for name in GATES}
    for i, meaning in enumerate(meanings):
        own = int(found.image_ids[i])
        cat, col, size = meaning["category"], meaning["colour"], meaning["size"]
        others = [image_id for image_id in images if image_id != own]
        cosine = {image_id: float(found.text[i] @ found.pool[column[image_id]]) for image_id in others}
        splits = {}
        if cat:
            splits["category"] = (others, lambda o, cat=cat: any(c == cat for c, _, _ in o))
        if col:
            splits["colour"] = (others, lambda o, col=col: any(k == col for _, k, _ in o))
        if cat and col and size:
            among = [image_id for image_id in others if (cat, col) in {(c, k) for c, k, _ in images[image_id]}]
            splits["size_given_category_colour"] = (among, lambda o, t=(cat, col, size): t in o)
        for name, (among, holds) in splits.items():
            labels = np.array([holds(images[image_id]) for image_id in among], dtype=bool)
            if labels.any() and not labels.all():
                expected[name].append(_pairs_auc(np.array([cosine[image_id] for image_id in among]), labels))
    for name in GATES:
        assert expected[name], f"the pool gives no sentence a {name} split"
        assert reading[name] == pytest.approx(np.mean(expected[name]))
        assert reading["sentences"][name] == len(expected[name])
    assert reading["gates"] == passes(reading)
