"""Split planning: decisions that span images, fixed before any image is drawn.

unc (RefCOCO, RefCOCO+, gRefCOCO) and umd (RefCOCOg) split by image, about 70/10/10/10 and
80/10/10; google splits by object (RefCOCO train/val/test 80/10/10, RefCOCOg train/val
90/10), so its train and val share images. The plan also fixes each image's distractor
level and which images get gRefCOCO multi-target and no-target refs, and forces the few
choices that keep every split non-empty from :data:`MIN_NUM_IMAGES` images on.

>>> plan = make_plan(MIN_NUM_IMAGES, seed=0, level_weights=(1, 1, 1, 1))
>>> sorted(set(plan.unc)), sorted(set(plan.umd))
(['testA', 'testB', 'train', 'val'], ['test', 'train', 'val'])
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from nemo_hf.synthetic.scenes import level_sequence

# Fewest images for which every split of every scheme gets at least one image / object.
MIN_NUM_IMAGES = 12
SPLIT_GROUP = {"testA": "round", "testB": "angular"}  # unc test splits refer to one group only


@dataclass(frozen=True)
class Plan:
    """Decisions that span images, fixed before any image is drawn."""

    image_ids: tuple[int, ...]
    unc: tuple[str, ...]  # per image: train / val / testA / testB
    umd: tuple[str, ...]  # per image: train / val / test
    levels: tuple[int, ...]  # per image: distractor level 0..3 (3 = "3+")
    # image index -> google splits of its first referred objects, forced so that every
    # google split is non-empty and train and val share an image
    forced_google: dict[int, tuple[str, ...]]
    forced_google_g: dict[int, tuple[str, ...]]
    gref_multi: tuple[bool, ...]
    gref_no_target: tuple[bool, ...]


def _by_image_split(rng: np.random.Generator, n: int, names: Sequence[str], shares: Sequence[float]) -> list[str]:
    sizes = [max(1, round(share * n)) for share in shares[1:]]
    labels = [names[0]] * (n - sum(sizes))
    for name, size in zip(names[1:], sizes, strict=True):
        labels += [name] * size
    return [labels[j] for j in rng.permutation(n)]


def make_plan(num_images: int, seed: int, level_weights: Sequence[float]) -> Plan:
    """The plan of a tree of ``num_images`` images; a deterministic function of its arguments.

    Image shares of the distractor levels 0, 1, 2, 3+ follow ``level_weights`` as closely
    as whole counts allow (see :func:`~nemo_hf.synthetic.scenes.level_sequence`).
    """
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(0,)))
    id_space = max(600_000, 40 * num_images)
    image_ids = sorted(int(v) + 1 for v in rng.choice(id_space, size=num_images, replace=False))
    unc = _by_image_split(rng, num_images, ("train", "val", "testA", "testB"), (0.7, 0.1, 0.1, 0.1))
    umd = _by_image_split(rng, num_images, ("train", "val", "test"), (0.8, 0.1, 0.1))
    levels = [int(v) for v in rng.permutation(np.array(level_sequence(level_weights, num_images)))]
    # unc-train images refer to at least two objects (see choose_referred)
    train_images = [i for i in range(num_images) if unc[i] == "train"]
    shared, lone = train_images[0], train_images[1]
    multi = rng.random(num_images) < 0.7
    # a category group makes a multi-target ref certain (without one, only shared colours do)
    first_group = next((i for i in range(num_images) if levels[i] > 0), None)
    if first_group is not None:
        multi[first_group] = True
    no_target = rng.random(num_images) < 0.35
    for split in ("train", "val", "testA", "testB"):
        no_target[unc.index(split)] = True
    return Plan(
        image_ids=tuple(image_ids),
        unc=tuple(unc),
        umd=tuple(umd),
        levels=tuple(levels),
        forced_google={shared: ("val", "train"), lone: ("test",)},
        forced_google_g={shared: ("val", "train")},
        gref_multi=tuple(bool(v) for v in multi),
        gref_no_target=tuple(bool(v) for v in no_target),
    )


def google_splits(plan: Plan, i: int, count: int, rng: np.random.Generator) -> dict[str, list[str]]:
    """Per referred object of image ``i``: its google split for RefCOCO and for RefCOCOg."""
    out = {}
    for dataset, forced, names, probs in (
        ("refcoco", plan.forced_google, ("train", "val", "test"), (0.8, 0.1, 0.1)),
        ("refcocog", plan.forced_google_g, ("train", "val"), (0.9, 0.1)),
    ):
        drawn = [str(rng.choice(names, p=probs)) for _ in range(count)]
        fixed = forced.get(i, ())
        out[dataset] = list(fixed) + drawn[len(fixed) :]
    return out
