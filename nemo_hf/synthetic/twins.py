"""Counterfactual twins: a scene, and the same scene with one shape drawn as another category.

A CLIP trained contrastively on random synthetic scenes can tell almost every image of a
batch from the others by colour and layout, so it learns category late (BENCHMARKS.md, the
synthetic CLIP's gate). A twin pair leaves nothing else to go on: the same background, the
same shapes in the same places, except one, drawn as a category the scene lacks. Each
image's expression ("the red star") holds for it and not for its twin ("the red ring").

The twins follow the synthetic world's own rules (:func:`~nemo_hf.synthetic.scenes.make_scene`,
JPEG-encoded like the tree's images) from a stream of their own, so they never repeat a
scene of a tree made with the same seed.

>>> pair = category_twins(1, seed=0)[0]
>>> pair.text != pair.twin_text, pair.image.size == pair.twin.size
(True, True)
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from nemo_hf.synthetic.scenes import CATEGORIES, PALETTE, SIZE_WORDS, Scene, WorldRules, draw, make_scene, reshaped

__all__ = ["TWIN_WORDS", "TwinPair", "category_twins", "swap_category"]

_TWIN_STREAM = 3  # SeedSequence spawn key: the tree's scenes use 1 (tree._build)
_FORMS = ("the {colour} {category}", "the {size} {colour} {category}", "{colour} {category}")
TWIN_WORDS = ("the", *PALETTE, *SIZE_WORDS, *(c.name for c in CATEGORIES))
"""Every word a twin's expression can hold (a CLIP's vocabulary needs them before the twins are made)."""


@dataclass(frozen=True)
class TwinPair:
    """Two images alike but for one shape's category, and the expression true of each alone."""

    scene: Scene
    twin_scene: Scene
    changed: int  # index of the shape whose category differs
    image: Image.Image
    twin: Image.Image
    text: str
    twin_text: str


def swap_category(scene: Scene, rng: np.random.Generator) -> tuple[Scene, int] | None:
    """``scene`` with one shape redrawn as a category the scene lacks, and that shape's index.

    Only a shape whose colour and category no other shape shares can change, so that "the
    <colour> <category>" is true of the scene and false of its twin, and the twin's phrase the
    other way round. None where no shape qualifies.

    >>> scene = make_scene(np.random.default_rng(3), (160, 120), 0, None)
    >>> twin, k = swap_category(scene, np.random.default_rng(0))
    >>> twin.shapes[k].category != scene.shapes[k].category, len(twin.shapes) == len(scene.shapes)
    (True, True)
    """
    pairs = [(s.colour, s.category.id) for s in scene.shapes]
    unique = [k for k, pair in enumerate(pairs) if pairs.count(pair) == 1]
    absent = [c for c in CATEGORIES if all(s.category.id != c.id for s in scene.shapes)]
    if not unique or not absent:
        return None
    k = unique[int(rng.integers(len(unique)))]
    category = absent[int(rng.integers(len(absent)))]
    shapes = list(scene.shapes)
    shapes[k] = reshaped(shapes[k], category, rng)
    return Scene(scene.width, scene.height, tuple(shapes)), k


def _jpeg(image: Image.Image, quality: int) -> Image.Image:
    """The image as the tree stores it: JPEG artefacts are part of what a CLIP sees."""
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    buffer.seek(0)
    return Image.open(buffer).convert("RGB")


def category_twins(
    n: int, seed: int, *, image_size: tuple[int, int] = (320, 240), jpeg_quality: int = 90,
    distractor_levels: Sequence[float] = (0.25, 0.25, 0.25, 0.25), object_scale: float = 1.0,
    objects_per_image: tuple[int, int] = (2, 6), same_colour_prob: float | None = None, separated_sizes: bool = False,
    start: int = 0,
) -> list[TwinPair]:
    """Twin pairs ``start`` to ``start + n - 1`` of the world the keywords describe.

    The keywords mean what they mean to :func:`~nemo_hf.synthetic.make_refer_dataset`. Pair
    ``i`` is a pure function of (``seed``, ``i``), so many pairs can be made a chunk at a
    time; a scene with no shape to change is drawn again from the same stream.

    >>> [p.text for p in category_twins(2, seed=5)][1] == category_twins(1, seed=5, start=1)[0].text
    True
    """
    rules = WorldRules(tuple(objects_per_image), same_colour_prob, separated_sizes)  # type: ignore[arg-type]
    weights = np.asarray(distractor_levels, dtype=float)
    pairs = []
    for i in range(start, start + n):
        rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(_TWIN_STREAM, i)))
        while True:
            level = int(rng.choice(len(weights), p=weights / weights.sum()))
            scene = make_scene(rng, image_size, level, None, object_scale, rules)
            if (swapped := swap_category(scene, rng)) is not None:
                break
        twin_scene, k = swapped
        form = _FORMS[int(rng.integers(len(_FORMS)))]
        background = int(rng.integers(2**32))  # both drawn on the same background
        image, twin = (_jpeg(draw(s, np.random.default_rng(background)), jpeg_quality) for s in (scene, twin_scene))
        before, after = scene.shapes[k], twin_scene.shapes[k]
        text, twin_text = (form.format(colour=s.colour, size=s.size, category=s.category.name) for s in (before, after))
        pairs.append(TwinPair(scene, twin_scene, k, image, twin, text, twin_text))
    return pairs
