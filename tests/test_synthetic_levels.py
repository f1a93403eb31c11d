"""Controlled difficulty: ``distractor_levels`` weighs the images' distractor levels 0, 1, 2, 3+.

Distractor counts are recounted from ``instances.json`` (objects of the referred object's
category in its image, less one), never taken from the generator, and checked against the
``distractors`` column of the RefCOCO builder.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from nemo_hf import load_refcoco
from nemo_hf.synthetic import SyntheticRefer, make_refer_dataset
from nemo_hf.synthetic.scenes import level_sequence
from tests.test_synthetic import FILES, digest, load_refs

EASY_MAJORITY = (0.4, 0.3, 0.2, 0.1)
weights_strategy = st.lists(st.floats(0, 10), min_size=4, max_size=4).filter(lambda w: sum(w) > 0)


def recounted(tree: SyntheticRefer, dataset: str, refs_file: str) -> list[tuple[int, int]]:
    """(image id, distractors) of every one-object ref of one refs file."""
    annotations = json.loads((tree.data_dir(dataset) / "instances.json").read_text())["annotations"]
    per_category = Counter((a["image_id"], a["category_id"]) for a in annotations)
    out = []
    for ref in load_refs(tree.data_dir(dataset) / refs_file):
        category = ref["category_id"]
        if isinstance(category, list):  # gRefCOCO: one-object refs only
            if len(category) != 1 or ref["no_target"]:
                continue
            category = category[0]
        out.append((ref["image_id"], per_category[ref["image_id"], category] - 1))
    return out


def image_levels(pairs: list[tuple[int, int]]) -> Counter[int]:
    """Images per level, an image's level being its refs' largest distractor count (3 = 3+)."""
    level: dict[int, int] = {}
    for image_id, distractors in pairs:
        level[image_id] = max(level.get(image_id, 0), min(distractors, 3))
    return Counter(level.values())


@settings(max_examples=300, deadline=None)
@given(weights=weights_strategy, n=st.integers(1, 400))
def test_level_counts_are_the_shares_rounded(weights: list[float], n: int) -> None:
    counts = Counter(level_sequence(weights, n))
    assert sum(counts.values()) == n and set(counts) <= {0, 1, 2, 3}
    for k in range(4):
        assert abs(counts[k] - weights[k] / sum(weights) * n) < 1 + 1e-9, (weights, n, counts)
        assert counts[k] == 0 or weights[k] > 0


@given(weight=st.floats(1e-6, 1e6), n=st.integers(1, 100))
def test_equal_weights_of_any_scale_cycle_through_the_levels(weight: float, n: int) -> None:
    assert level_sequence([weight] * 4, n) == [j % 4 for j in range(n)]


@settings(max_examples=3, deadline=None)
@given(weights=weights_strategy, seed=st.integers(0, 2**16))
@example(weights=EASY_MAJORITY, seed=0)
def test_image_shares_follow_the_weights(tmp_path_factory: pytest.TempPathFactory, weights, seed: int) -> None:
    tree = make_refer_dataset(
        tmp_path_factory.mktemp("levels") / "t", 200, seed,
        image_size=(96, 96), datasets=("refcoco",), distractor_levels=weights,
    )  # fmt: skip
    levels = image_levels(recounted(tree, "refcoco", "refs(unc).p"))
    assert sum(levels.values()) == 200  # every image has a ref, and so shows its level
    for k in range(4):
        assert levels[k] / 200 == pytest.approx(weights[k] / sum(weights), abs=0.02), (k, levels)


def test_the_builder_reports_the_recounted_distractors(tmp_path: Path) -> None:
    tree = make_refer_dataset(tmp_path / "t", 200, 1, image_size=(112, 112), datasets=("refcoco",),
                              distractor_levels=EASY_MAJORITY)  # fmt: skip
    built = load_refcoco("refcoco_unc", tree.root, tree.image_dir, cache_dir=tmp_path / "cache")
    rows = [
        (image_id, d)
        for split in built.values()
        for image_id, d in zip(split["image_id"], split["distractors"], strict=True)
    ]
    assert sorted(rows) == sorted(recounted(tree, "refcoco", "refs(unc).p"))
    levels = image_levels(rows)
    assert [levels[k] for k in range(4)] == [round(200 * w) for w in EASY_MAJORITY]
    hard = sum(1 for _, d in rows if d >= 2) / len(rows)
    assert hard >= 0.2  # a real hard stratum among the refs, not only among the images


@pytest.mark.parametrize(
    ("weights", "allowed"),
    [((1, 0, 0, 0), {0}), ((0, 0, 0, 1), {3, 4, 5}), ((0, 1, 1, 0), {1, 2})],
)
def test_levels_of_weight_zero_appear_in_no_one_object_ref(tmp_path: Path, weights, allowed: set[int]) -> None:
    tree = make_refer_dataset(tmp_path / "t", 24, 3, image_size=(128, 128), distractor_levels=weights)
    seen: set[int] = set()
    for dataset, files in FILES.items():
        for name, splits in files.items():
            assert sorted({r["split"] for r in load_refs(tree.data_dir(dataset) / name)}) == sorted(splits)
            counts = {d for _, d in recounted(tree, dataset, name)}
            assert counts <= allowed, (dataset, name, counts)
            seen |= counts
    assert {min(d, 3) for d in seen} == {min(d, 3) for d in allowed}  # every level of positive weight shows
    built = load_refcoco("refcoco_unc", tree.root, tree.image_dir, split="train", cache_dir=tmp_path / "cache")
    assert set(built["distractors"]) <= allowed


def test_same_weights_give_the_same_bytes_and_equal_weights_are_the_default(tmp_path: Path) -> None:
    kwargs = {"num_images": 16, "seed": 2, "image_size": (96, 96), "datasets": ("refcoco", "grefcoco")}
    default = digest(make_refer_dataset(tmp_path / "default", **kwargs).root)
    assert digest(make_refer_dataset(tmp_path / "ones", distractor_levels=(1, 1, 1, 1), **kwargs).root) == default
    hard = digest(make_refer_dataset(tmp_path / "hard", distractor_levels=(0.1, 0.2, 0.3, 0.4), **kwargs).root)
    again = make_refer_dataset(tmp_path / "again", distractor_levels=np.array([1.0, 2.0, 3.0, 4.0]), **kwargs)
    assert digest(again.root) == hard  # the same proportions, however written
    assert hard["refcoco/instances.json"] != default["refcoco/instances.json"]


@pytest.mark.parametrize(
    "value",
    [(1, 1, 1), (1, 1, 1, 1, 1), (1, -0.5, 1, 1), (0, 0, 0, 0), (1, math.nan, 1, 1), (1, math.inf, 1, 1),
     (True, 1, 1, 1), ("1", 1, 1, 1), "1111", 0.5, None, {0: 1, 1: 1, 2: 1, 3: 1}],
)  # fmt: skip
def test_bad_weights_are_refused_naming_the_value(tmp_path: Path, value) -> None:
    with pytest.raises(ValueError, match=rf"distractor_levels .* got {re.escape(repr(value))}$"):
        make_refer_dataset(tmp_path / "t", 12, distractor_levels=value)
    assert not (tmp_path / "t").exists()
