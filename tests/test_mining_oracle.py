"""The oracle miners: their mistakes counted on mosaics NeMo really draws from their columns.

With τ on, the mosaic-aware oracle never puts an object the expression fits into a
negative cell (the audit finds none, and a property test shows ``could_fit`` is sound for
any placement); with τ off it does, often; with more noise the noisy oracle drifts to
random negatives.
"""

from __future__ import annotations

import json

import datasets
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nemo_hf.data import load_refcoco
from nemo_hf.data.meaning import SceneObject, fits, make_meaning
from nemo_hf.data.scene_batch import SceneBatch, could_fit, match_scores
from nemo_hf.mining.mine import NEGATIVE_FEATURES
from nemo_hf.mining.oracle import NOISE_SWEEP, MosaicCells, oracle_negatives, reachable_positions
from nemo_hf.mosaic import grid_layout
from nemo_hf.nemo import NeMo
from nemo_hf.nemo.audit import GroundTruth, audit_mosaics, objects_in_cell
from nemo_hf.synthetic import FAIR_WORLD, make_refer_dataset
from tests.test_meaning import meaning_st, objects_st

datasets.disable_progress_bars()
SIZE = 96


@pytest.fixture(scope="module")
def train(tmp_path_factory: pytest.TempPathFactory) -> datasets.Dataset:
    work = tmp_path_factory.mktemp("oracle")
    tree = make_refer_dataset(work / "refer", 120, seed=0, datasets=("refcoco",), image_size=(160, 120), **FAIR_WORLD)
    return load_refcoco("refcoco_unc", tree.root, tree.image_dir, split="train", cache_dir=work / "cache")


def _false_negatives(mined: datasets.Dataset, pool: datasets.Dataset, random_share: float = 0.0) -> float:
    nemo = NeMo(pool, size=SIZE, mosaic_prob=1.0, random_share=random_share, top_k=6)
    rows = mined.map(nemo, batched=True, remove_columns=mined.column_names)
    audit = audit_mosaics(rows, GroundTruth.from_datasets(pool), size=SIZE)
    assert audit.mosaics == sum(len(s) for s in mined["sentences"])
    return audit.shares()["false_negative"]


def test_tau_keeps_every_drawn_mosaic_free_of_false_negatives(train: datasets.Dataset) -> None:
    query = train.select(range(60))
    safe = oracle_negatives(query, train, top_k=6, mosaic=MosaicCells(size=SIZE))
    assert _false_negatives(safe, train) == 0.0
    assert _false_negatives(oracle_negatives(query, train, top_k=6, tau=None), train) > 0.3
    # judged only in each image's own frame, some wrong labels get through the cells
    own_frame = _false_negatives(oracle_negatives(query, train, top_k=6, mosaic=None), train)
    assert 0.0 < own_frame < 0.3


def test_columns_are_those_of_clip_mining(train: datasets.Dataset) -> None:
    mined = oracle_negatives(train, train, top_k=5)
    assert {k: mined.features[k] for k in NEGATIVE_FEATURES} == dict(NEGATIVE_FEATURES)
    for row in mined.remove_columns(["image", "mask"]):
        assert len(row["negative_image_ids"]) == len(row["sentences"]) == len(row["negative_fallback"])
        for ids, values in zip(row["negative_image_ids"], row["negative_scores"], strict=True):
            assert len(ids) == 5 and row["image_id"] not in ids and len(set(ids)) == 5
            assert values == sorted(values, reverse=True) and max(values) < 1.0


def _chosen_true_scores(mined: datasets.Dataset, pool: SceneBatch) -> float:
    """Mean true score of the chosen negatives, and of every candidate (what random draws)."""
    meanings = [json.loads(m) for row in mined["meaning"] for m in row]
    chosen = [ids for row in mined["negative_image_ids"] for ids in row]
    values = []
    for meaning, ids in zip(meanings, chosen, strict=True):
        scores = match_scores(meaning, pool).image_scores()
        values.append(scores[np.searchsorted(pool.image_ids, ids)].mean())
    return float(np.mean(values))


def test_noise_drifts_the_noisy_oracle_towards_random(train: datasets.Dataset) -> None:
    from nemo_hf.data.ground_truth import scene_frames

    pool, query = scene_frames(train), train.select(range(50))
    meanings = [json.loads(m) for row in query["meaning"] for m in row]
    random_level = np.mean([match_scores(m, pool).image_scores().mean() for m in meanings])
    exact = _chosen_true_scores(oracle_negatives(query, train, top_k=10), pool)
    assert exact > random_level + 0.1
    # (a little noise first lets near-positives past τ: the 'too ambiguous' end of the sweep)
    levels = [_chosen_true_scores(oracle_negatives(query, train, top_k=10, noise=s), pool) for s in NOISE_SWEEP]
    assert levels == sorted(levels, reverse=True), levels  # then more noise, less alike
    far = _chosen_true_scores(oracle_negatives(query, train, top_k=10, noise=1000.0, tau=None), pool)
    assert abs(far - random_level) < 0.05, (far, random_level)


def test_the_same_seed_gives_the_same_negatives(train: datasets.Dataset) -> None:
    query = train.select(range(30))
    first = oracle_negatives(query, train, top_k=4, noise=0.75, seed=3)["negative_image_ids"]
    assert oracle_negatives(query, train, top_k=4, noise=0.75, seed=3)["negative_image_ids"] == first
    assert oracle_negatives(query, train, top_k=4, noise=0.75, seed=4)["negative_image_ids"] != first


def _tiny(colours: list[str], meaning: dict) -> tuple[datasets.Dataset, datasets.Dataset]:
    """A pool of one-ring images of the given colours; the query is image 0 with ``meaning``."""
    objects = [{"ann_id": [i], "category": ["ring"], "colour": [c], "size": ["small"], "x": [10.0], "y": [50.0]}
               for i, c in enumerate(colours)]  # fmt: skip
    pool = datasets.Dataset.from_dict({"image_id": list(range(len(colours))), "width": [100] * len(colours),
                                       "height": [100] * len(colours), "scene_objects": objects})  # fmt: skip
    query = datasets.Dataset.from_dict({"image_id": [0], "sentences": [["the red ring"]],
                                        "meaning": [[json.dumps(meaning)]]})  # fmt: skip
    return query, pool


def test_too_few_survivors_fall_back_to_the_least_alike() -> None:
    query, pool = _tiny(["red", "red", "red", "blue", "red"], make_meaning(category="ring", colour="red"))
    row = oracle_negatives(query, pool, top_k=4, needed=3)[0]
    assert row["negative_fallback"] == [True]
    ids, scores = row["negative_image_ids"][0], row["negative_scores"][0]
    # the one survivor, then two of the least alike left, all in ranking order as CLIP mining lists them
    assert 3 in ids and len(ids) == 3 and 0 not in ids and scores == sorted(scores, reverse=True)
    kept = oracle_negatives(query, pool, top_k=4, needed=3, tau=None)[0]
    assert kept["negative_fallback"] == [False] and sorted(kept["negative_image_ids"][0]) == [1, 2, 3, 4]


def test_data_without_ground_truth_is_refused_plainly() -> None:
    query, pool = _tiny(["red", "blue", "green", "pink"], make_meaning(colour="red"))
    with pytest.raises(ValueError, match="synthetic"):
        oracle_negatives(query, pool.remove_columns(["scene_objects"]))
    with pytest.raises(ValueError, match="without a meaning"):
        oracle_negatives(query.map(lambda r: {"meaning": [None]}), pool)


@settings(max_examples=150, deadline=None)
@given(
    meaning=meaning_st,
    frames=st.lists(st.tuples(objects_st, st.sampled_from([(90.0, 90.0), (150.0, 90.0), (90.0, 150.0)])),
                    min_size=4, max_size=9),
    grid=st.sampled_from([2, 3]),
    resize=st.sampled_from(["stretch", "letterbox"]),
    data=st.data(),
)  # fmt: skip
def test_could_fit_is_never_wrong_about_a_placement(meaning, frames, grid, resize, data) -> None:
    """Wherever a frame lands in a mosaic, an object the meaning fits there comes from a frame judged possible."""
    cells = MosaicCells(grid=grid, size=120, resize=resize)
    batch = SceneBatch.from_frames(list(range(len(frames))), frames)
    possible = could_fit(meaning, batch, *reachable_positions(batch, cells))
    order = data.draw(st.permutations(range(len(frames))))[: grid * grid]
    order += [order[0]] * (grid * grid - len(order))
    placed, source = [], []
    for frame_index, box in zip(order, grid_layout(grid, 120), strict=True):
        here = objects_in_cell((tuple(frames[frame_index][0]), frames[frame_index][1]), box, resize)
        placed += here
        source += [frame_index] * len(here)
    for k in fits(meaning, placed, (120, 120)):
        assert possible[source[k]], (meaning, frames[source[k]])


def test_reachable_thirds_of_a_two_by_two_stretch() -> None:
    objects = [SceneObject("ring", "red", "small", x, 10) for x in (10, 50, 90)]
    batch = SceneBatch.from_frames([1], [(objects, (100, 100))])
    columns, _ = reachable_positions(batch, MosaicCells(size=240))
    # left third of its image: left (left cells) or middle (right cells); right third: middle or right
    assert columns[0].tolist() == [0b011, 0b101, 0b110]


def test_the_miners_and_the_audit_stay_above_the_synthetic_world() -> None:
    """They read the ground truth from dataset columns only, so a Hub copy serves them too."""
    import ast
    from pathlib import Path

    import nemo_hf

    root = Path(nemo_hf.__file__).parent
    for path in [*(root / "mining").glob("*.py"), root / "nemo" / "audit.py", *(root / "data").glob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                names = [node.module or "", *(a.name for a in node.names)]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            assert not [n for n in names if "synthetic" in n], (path, names)
