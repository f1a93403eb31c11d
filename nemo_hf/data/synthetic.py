"""Synthetic RefCOCO-family trees: scenes of coloured shapes written as real refer files.

:func:`make_refer_dataset` draws JPEG scenes of 2–6 filled shapes on a textured background
and writes them in the exact layout and formats of the downloads, so any RefCOCO reader
(the original ``refer`` toolkit included) reads them with no special case::

    root/refcoco/   instances.json  refs(unc).p  refs(google).p
    root/refcoco+/  instances.json  refs(unc).p
    root/refcocog/  instances.json  refs(umd).p  refs(google).p
    root/grefcoco/  instances.json  grefs(unc).json
    root/images/train2014/COCO_train2014_%012d.jpg   (shared by all datasets, like COCO)

What the files hold, and how it is controlled:

* **Shapes** — ten categories (COCO-style ids 1..10, supercategory ``"shape"``); circle,
  ellipse and ring form the *round* group, which plays the role of RefCOCO's "people":
  unc ``testA`` refers only to round shapes and ``testB`` only to the others. Colours come
  from :data:`PALETTE`; sizes are small / medium / large by radius.
* **Distractors** (other objects of the referred object's category) are set per image:
  image *i* gets a level ``L`` from a seeded permutation of ``0, 1, 2, 3, 0, 1, …``, draws
  its *primary* category ``L + 1`` times (``3`` → 4–6 times, the "3+" case) and every other
  shape in a category of its own. Every primary object thus has ``L`` (or 3–5)
  distractors and every other object none, so a few dozen images already cover 0, 1, 2
  and 3+ with near-equal counts.
* **Masks** — every segmentation is rasterised from the same vertex list PIL draws. A
  cross is two overlapping bars (two polygon parts: readers must take the union, not the
  sum), a ring is one keyhole polygon around its hole. Every ``1 / rle_share``-th
  annotation is stored as RLE instead, alternating uncompressed (``counts`` a list,
  ``iscrowd`` 1, as COCO stores crowds) and compressed (``counts`` a string, as COCO JSON
  stores it). Referred objects can be any of the three kinds.
* **Expressions** name colour, shape, size, absolute position and relations to another
  shape; each is kept only if it picks out the object in its scene, except where nothing
  can (then the most specific description is used). RefCOCO+ uses appearance words only,
  RefCOCOg longer sentences (~8 words). ``raw`` may start with a capital and end with
  punctuation; ``sent`` and ``tokens`` are the lowercased words.
* **Splits** — unc (RefCOCO, RefCOCO+, gRefCOCO) and umd (RefCOCOg) split by image, about
  70/10/10/10 and 80/10/10; google splits by object (RefCOCO train/val/test 80/10/10,
  RefCOCOg train/val 90/10), so its train and val share images. Both schemes of one
  dataset hold the same refs. From :data:`MIN_NUM_IMAGES` images on, every split of every
  scheme is non-empty and some image is shared by google train and val.
* **gRefCOCO** ``grefs(unc).json`` holds refs with the fields ``ref_id``, ``image_id``,
  ``ann_id`` (a list; ``[-1]`` for no target), ``category_id`` (a list parallel to
  ``ann_id``; ``[-1]`` for no target), ``no_target``, ``split``, ``sent_ids``,
  ``sentences`` and ``file_name``; besides one-object refs it has multi-target
  expressions ("all red shapes", "the two circles") and no-target ones that describe a
  shape absent from the image ("the purple circle" where no circle is purple).

Output is a deterministic function of the arguments (byte-identical files for one seed)
and each image draws from its own seeded stream, so the images and the RefCOCO refs do
not depend on which other datasets are requested. Work is streamed: one image is in
memory at a time and annotations and refs are spooled to disk, so a RefCOCO-sized tree
(20k images) costs a few ms per image at 640×480 and flat memory. The tree is built in a
temporary folder beside ``root`` and renamed into place, so an interrupted run leaves no
half-written tree.

>>> import tempfile, pathlib, pickle
>>> tree = make_refer_dataset(pathlib.Path(tempfile.mkdtemp()) / "refer", num_images=12)
>>> refs = pickle.loads((tree.data_dir("refcoco") / "refs(unc).p").read_bytes())
>>> sorted({ref["split"] for ref in refs})
['testA', 'testB', 'train', 'val']
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import pickle
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw
from pycocotools import mask as mask_utils
from tqdm.auto import tqdm

__all__ = [
    "CATEGORIES",
    "DATASETS",
    "MIN_NUM_IMAGES",
    "PALETTE",
    "ShapeCategory",
    "SyntheticRefer",
    "make_refer_dataset",
]

DATASETS = ("refcoco", "refcoco+", "refcocog", "grefcoco")
# Fewest images for which every split of every scheme gets at least one image / object.
MIN_NUM_IMAGES = 12


@dataclass(frozen=True)
class ShapeCategory:
    """One shape category as written to ``instances.json``."""

    id: int
    name: str
    plural: str
    group: str  # "round" (the testA group, like RefCOCO's people) or "angular"


CATEGORIES: tuple[ShapeCategory, ...] = (
    ShapeCategory(1, "circle", "circles", "round"),
    ShapeCategory(2, "ellipse", "ellipses", "round"),
    ShapeCategory(3, "ring", "rings", "round"),
    ShapeCategory(4, "square", "squares", "angular"),
    ShapeCategory(5, "triangle", "triangles", "angular"),
    ShapeCategory(6, "star", "stars", "angular"),
    ShapeCategory(7, "hexagon", "hexagons", "angular"),
    ShapeCategory(8, "cross", "crosses", "angular"),
    ShapeCategory(9, "diamond", "diamonds", "angular"),
    ShapeCategory(10, "pentagon", "pentagons", "angular"),
)

# Colours at least ~85 apart from each other and ~80 from any background tone, so a
# JPEG-compressed pixel still names its colour.
PALETTE: dict[str, tuple[int, int, int]] = {
    "red": (215, 35, 35),
    "green": (30, 150, 50),
    "blue": (35, 75, 215),
    "yellow": (240, 220, 40),
    "purple": (110, 25, 150),
    "orange": (245, 135, 25),
    "white": (248, 248, 248),
    "black": (18, 18, 18),
    "pink": (245, 120, 200),
    "cyan": (40, 195, 210),
}

_SPLIT_FILES: dict[str, tuple[tuple[str, str], ...]] = {
    # dataset -> ((scheme, file name), ...)
    "refcoco": (("unc", "refs(unc).p"), ("google", "refs(google).p")),
    "refcoco+": (("unc", "refs(unc).p"),),
    "refcocog": (("umd", "refs(umd).p"), ("google", "refs(google).p")),
    "grefcoco": (("unc", "grefs(unc).json"),),
}

# radius as a fraction of the image's shorter side, per size class
_SIZE_RANGES = {"small": (0.055, 0.08), "medium": (0.09, 0.12), "large": (0.13, 0.16)}
_SIZE_ORDER = ("large", "medium", "small")  # placement falls back towards small
_SIZE_PROBS = {"small": 0.35, "medium": 0.4, "large": 0.25}
_SIZE_WORDS = {"small": ("small", "little", "tiny"), "medium": ("medium",), "large": ("big", "large")}
_SENTENCES_PER_REF = (1, 2, 3, 4)
_SENTENCES_PROBS = (0.1, 0.25, 0.35, 0.3)  # mean 2.85, RefCOCO's sentences per ref
_PICTURE_WORDS = ("image", "picture", "photo")
_NUMBER_WORDS = {2: "two", 3: "three", 4: "four", 5: "five", 6: "six"}
_FIRST_ANN_ID = 100_000  # far from 0: a reader that takes an id for a list position fails loudly
_PICKLE_BATCH = 1000  # items per APPENDS opcode, as the standard pickler batches them
_SPLIT_GROUP = {"testA": "round", "testB": "angular"}  # unc test splits refer to one group only


@dataclass(frozen=True)
class SyntheticRefer:
    """Where :func:`make_refer_dataset` wrote its tree.

    >>> tree = SyntheticRefer(Path("refer"), num_images=40, datasets=("refcoco",))
    >>> tree.data_dir("refcoco"), tree.image_dir
    (PosixPath('refer/refcoco'), PosixPath('refer/images/train2014'))
    """

    root: Path
    num_images: int
    datasets: tuple[str, ...] = DATASETS

    @property
    def image_dir(self) -> Path:
        """The shared COCO-style image folder, ``root/images/train2014``."""
        return self.root / "images" / "train2014"

    def data_dir(self, dataset: str) -> Path:
        """The folder of one dataset's ``instances.json`` and refs files."""
        if dataset not in self.datasets:
            raise ValueError(
                f"dataset {dataset!r} was not generated in {self.root}; it holds {', '.join(self.datasets)}"
            )
        return self.root / dataset


# --------------------------------------------------------------------------- plan


@dataclass(frozen=True)
class _Plan:
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


def _plan(num_images: int, seed: int) -> _Plan:
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(0,)))
    id_space = max(600_000, 40 * num_images)
    image_ids = sorted(int(v) + 1 for v in rng.choice(id_space, size=num_images, replace=False))
    unc = _by_image_split(rng, num_images, ("train", "val", "testA", "testB"), (0.7, 0.1, 0.1, 0.1))
    umd = _by_image_split(rng, num_images, ("train", "val", "test"), (0.8, 0.1, 0.1))
    levels = [int(v) for v in rng.permutation(np.arange(num_images) % 4)]
    # unc-train images refer to at least two objects (see _choose_referred)
    train_images = [i for i in range(num_images) if unc[i] == "train"]
    shared, lone = train_images[0], train_images[1]
    multi = rng.random(num_images) < 0.7
    multi[next(i for i in range(num_images) if levels[i] > 0)] = True
    no_target = rng.random(num_images) < 0.35
    for split in ("train", "val", "testA", "testB"):
        no_target[unc.index(split)] = True
    return _Plan(
        image_ids=tuple(image_ids),
        unc=tuple(unc),
        umd=tuple(umd),
        levels=tuple(levels),
        forced_google={shared: ("val", "train"), lone: ("test",)},
        forced_google_g={shared: ("val", "train")},
        gref_multi=tuple(bool(v) for v in multi),
        gref_no_target=tuple(bool(v) for v in no_target),
    )


# --------------------------------------------------------------------------- scenes


@dataclass(frozen=True)
class _Shape:
    category: ShapeCategory
    colour: str
    size: str
    cx: float
    cy: float
    parts: tuple[tuple[float, ...], ...]  # flat polygon parts, as drawn and as annotated


@dataclass(frozen=True)
class _Scene:
    width: int
    height: int
    shapes: tuple[_Shape, ...]


def _ring_points(cx: float, cy: float, rx: float, ry: float, theta: float, n: int) -> np.ndarray:
    angles = np.linspace(0.0, 2.0 * np.pi, n, endpoint=False)
    x, y = rx * np.cos(angles), ry * np.sin(angles)
    c, s = np.cos(theta), np.sin(theta)
    return np.stack([cx + c * x - s * y, cy + s * x + c * y], axis=1)


def _outline(category: str, cx: float, cy: float, r: float, rng: np.random.Generator) -> list[np.ndarray]:
    """Polygon parts of one shape, all inside the circle of radius ``r`` around the centre."""
    theta = float(rng.uniform(0.0, 2.0 * np.pi))
    smooth = int(np.clip(round(r / 1.5), 16, 64))
    if category == "circle":
        return [_ring_points(cx, cy, r, r, 0.0, smooth)]
    if category == "ellipse":
        return [_ring_points(cx, cy, r, r * float(rng.uniform(0.5, 0.7)), theta, smooth)]
    if category == "ring":
        outer = _ring_points(cx, cy, r, r, 0.0, smooth)
        inner = _ring_points(cx, cy, 0.5 * r, 0.5 * r, 0.0, smooth)
        # one keyhole polygon: outer loop, a zero-width cut in, inner loop backwards
        return [np.concatenate([outer, outer[:1], inner[:1], inner[::-1]])]
    if category == "cross":
        bar = np.array([[-0.95, -0.3], [0.95, -0.3], [0.95, 0.3], [-0.95, 0.3]]) * r
        c, s = np.cos(theta), np.sin(theta)
        parts = []
        for rot in (np.array([[c, -s], [s, c]]), np.array([[-s, -c], [c, -s]])):
            parts.append(bar @ rot.T + [cx, cy])
        return parts
    if category == "star":
        points = _ring_points(cx, cy, r, r, theta, 10)
        points[1::2] = (points[1::2] - [cx, cy]) * 0.45 + [cx, cy]
        return [points]
    if category == "diamond":
        return [_ring_points(cx, cy, r, 0.6 * r, theta, 4)]
    corners = {"square": 4, "triangle": 3, "hexagon": 6, "pentagon": 5}[category]
    return [_ring_points(cx, cy, r, r, theta, corners)]


def _place(
    rng: np.random.Generator, width: int, height: int, placed: list[tuple[float, float, float]], size: str
) -> tuple[str, float, float, float] | None:
    """Centre and radius for a new shape clear of the placed ones, shrinking it if it must."""
    short = min(width, height)
    for size_class in _SIZE_ORDER[_SIZE_ORDER.index(size) :]:
        low, high = _SIZE_RANGES[size_class]
        for _ in range(30):
            r = float(rng.uniform(low, high)) * short
            cx = float(rng.uniform(r + 2, width - r - 2))
            cy = float(rng.uniform(r + 2, height - r - 2))
            # the gap keeps every object's outline clear of the others, so masks are exact
            if all(np.hypot(cx - x, cy - y) >= r + q + 6 for x, y, q in placed):
                return size_class, cx, cy, r
    return None


def _make_scene(rng: np.random.Generator, size: tuple[int, int], level: int, group: str | None) -> _Scene:
    width = round(size[0] * float(rng.uniform(0.8, 1.2)))
    height = round(size[1] * float(rng.uniform(0.8, 1.2)))
    primaries = [c for c in CATEGORIES if group is None or c.group == group]
    primary = primaries[int(rng.integers(len(primaries)))]
    copies = level + 1 if level < 3 else int(rng.integers(4, 7))
    total = int(rng.integers(max(2, copies), 7))
    others = [c for c in CATEGORIES if c.id != primary.id]
    other_cats = [others[j] for j in rng.choice(len(others), size=total - copies, replace=False)]
    colour_names = list(PALETTE)
    # mostly distinct colours among copies; shared ones make the hard cases
    distinct = rng.random() < 0.7
    copy_colours = rng.choice(len(colour_names), size=copies, replace=not distinct)
    wanted = [(primary, colour_names[int(j)]) for j in copy_colours]
    wanted += [(c, colour_names[int(rng.integers(len(colour_names)))]) for c in other_cats]

    placed: list[tuple[float, float, float]] = []
    shapes = []
    for category, colour in wanted:
        size_class = str(rng.choice(list(_SIZE_PROBS), p=list(_SIZE_PROBS.values())))
        spot = _place(rng, width, height, placed, size_class)
        if spot is None:
            continue
        size_class, cx, cy, r = spot
        placed.append((cx, cy, r))
        parts = tuple(
            tuple(round(float(v), 2) for v in part.ravel()) for part in _outline(category.name, cx, cy, r, rng)
        )
        shapes.append(_Shape(category, colour, size_class, cx, cy, parts))
    return _Scene(width, height, tuple(shapes))


def _draw(scene: _Scene, rng: np.random.Generator) -> Image.Image:
    """Textured background (gradient + smooth noise, muted tones) with the shapes on top."""
    w, h = scene.width, scene.height
    gw, gh = w // 4 + 1, h // 4 + 1
    tone = float(rng.uniform(105, 155))
    start = tone + rng.uniform(-8, 8, 3)
    end = tone + rng.uniform(-8, 8, 3) + float(rng.uniform(-15, 15))
    angle = float(rng.uniform(0, 2 * np.pi))
    ramp = np.cos(angle) * np.linspace(0, 1, gw)[None, :] + np.sin(angle) * np.linspace(0, 1, gh)[:, None]
    ramp = (ramp - ramp.min()) / max(float(np.ptp(ramp)), 1e-6)
    base = start + (end - start) * ramp[..., None]
    coarse = rng.normal(0, 5, (gh // 6 + 2, gw // 6 + 2)).astype(np.float32)
    coarse = np.asarray(Image.fromarray(coarse).resize((gw, gh), Image.Resampling.BILINEAR))
    base += coarse[..., None] + rng.integers(-4, 5, (gh, gw, 3))
    small = Image.fromarray(np.clip(base, 0, 255).astype(np.uint8))
    # 4×4 blocks of fine noise are texture enough, and NEAREST upscales ~8× faster than BILINEAR
    image = small.resize((w, h), Image.Resampling.NEAREST)
    draw = ImageDraw.Draw(image)
    for shape in scene.shapes:
        for part in shape.parts:
            draw.polygon(list(part), fill=PALETTE[shape.colour])
    return image


def _choose_referred(scene: _Scene, rng: np.random.Generator, group: str | None, at_least: int) -> list[int]:
    """Indices of the shapes that get refs: the first primary copy, then some others."""
    eligible = [i for i, s in enumerate(scene.shapes) if group is None or s.category.group == group]
    chosen = {eligible[0]} | {i for i in eligible[1:] if rng.random() < 0.42}
    rest = [i for i in eligible if i not in chosen]
    while len(chosen) < min(at_least, len(eligible)):
        chosen.add(rest.pop(int(rng.integers(len(rest)))))
    return sorted(chosen)


# --------------------------------------------------------------------------- annotations


def _uncompressed_counts(mask: np.ndarray) -> list[int]:
    """COCO's uncompressed RLE: run lengths in column-major order, starting with a 0-run."""
    flat = mask.ravel(order="F")
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    counts = np.diff(np.concatenate([[0], change, [flat.size]])).tolist()
    return [0, *counts] if flat[0] else counts


def _annotation(shape: _Shape, ann_id: int, image_id: int, scene: _Scene, encoding: str) -> dict[str, Any]:
    h, w = scene.height, scene.width
    rle = mask_utils.merge(mask_utils.frPyObjects([list(p) for p in shape.parts], h, w), intersect=False)
    if encoding == "polygon":
        segmentation: Any = [list(p) for p in shape.parts]
    elif encoding == "rle":
        segmentation = {"size": [h, w], "counts": rle["counts"].decode("ascii")}
    else:
        segmentation = {"size": [h, w], "counts": _uncompressed_counts(mask_utils.decode(rle))}
    return {
        "id": ann_id,
        "image_id": image_id,
        "category_id": shape.category.id,
        "bbox": [round(float(v), 2) for v in mask_utils.toBbox(rle)],
        "segmentation": segmentation,
        "area": float(mask_utils.area(rle)),
        "iscrowd": int(encoding == "uncompressed"),
    }


def _encoding(index: int, rle_share: float) -> str:
    """Every 1/share-th annotation is RLE, alternating uncompressed and compressed."""
    if int((index + 1) * rle_share) == int(index * rle_share):
        return "polygon"
    return "uncompressed" if int((index + 1) * rle_share) % 2 else "rle"


# --------------------------------------------------------------------------- expressions

Words = tuple[str, ...]
_COMBOS: tuple[tuple[str, ...], ...] = (
    ("category",),
    ("colour", "category"),
    ("size", "category"),
    ("size", "colour", "category"),
)
_FULL = ("size", "colour", "category")


class _SceneText:
    """What can be said about the shapes of one scene, and which shapes each phrase fits."""

    def __init__(self, scene: _Scene, rng: np.random.Generator):
        self.scene = scene
        self.shapes = scene.shapes
        self.rng = rng

    def value(self, i: int, attr: str) -> Any:
        shape = self.shapes[i]
        return shape.category.id if attr == "category" else getattr(shape, attr)

    def members(self, i: int, attrs: Sequence[str]) -> list[int]:
        """Shapes that share the attributes of shape ``i`` (``i`` included)."""
        return [j for j in range(len(self.shapes)) if all(self.value(j, a) == self.value(i, a) for a in attrs)]

    def words(self, i: int, attrs: Sequence[str]) -> Words:
        shape = self.shapes[i]
        out = []
        for attr in attrs:
            if attr == "size":
                options = _SIZE_WORDS[shape.size]
                out.append(options[int(self.rng.integers(len(options)))])
            elif attr == "colour":
                out.append(shape.colour)
            else:
                out.append(shape.category.name)
        return tuple(out)

    def column(self, i: int) -> str:
        x = self.shapes[i].cx / self.scene.width
        return "left" if x < 1 / 3 else "right" if x > 2 / 3 else "middle"

    def row(self, i: int) -> str:
        y = self.shapes[i].cy / self.scene.height
        return "top" if y < 1 / 3 else "bottom" if y > 2 / 3 else "middle"

    def relation(self, i: int, j: int) -> str | None:
        """Where shape ``i`` lies from shape ``j``, when one direction clearly dominates."""
        dx = self.shapes[i].cx - self.shapes[j].cx
        dy = self.shapes[i].cy - self.shapes[j].cy
        if abs(dx) > 1.3 * abs(dy):
            return "left" if dx < 0 else "right"
        if abs(dy) > 1.3 * abs(dx):
            return "above" if dy < 0 else "below"
        return None

    def extremes(self, i: int, group: list[int]) -> list[str]:
        """Superlatives (leftmost, …) that hold for ``i`` within ``group`` by a clear margin."""
        others = [j for j in group if j != i]
        if not others:
            return []
        me = self.shapes[i]
        mx, my = 0.03 * self.scene.width, 0.03 * self.scene.height
        xs = [self.shapes[j].cx for j in others]
        ys = [self.shapes[j].cy for j in others]
        found = []
        if me.cx < min(xs) - mx:
            found.append("leftmost")
        if me.cx > max(xs) + mx:
            found.append("rightmost")
        if me.cy < min(ys) - my:
            found.append("topmost")
        if me.cy > max(ys) + my:
            found.append("lowest")
        return found

    def landmarks(self, i: int) -> list[tuple[int, Words]]:
        """Shapes of another category that a short appearance phrase picks out."""
        found = []
        for j, shape in enumerate(self.shapes):
            if shape.category.id == self.shapes[i].category.id:
                continue
            for attrs in _COMBOS[:2]:
                if self.members(j, attrs) == [j]:
                    found.append((j, self.words(j, attrs)))
                    break
        return found


def _relation_words(relation: str) -> Words:
    return (relation, "of") if relation in ("left", "right") else (relation,)


def _refcoco_phrases(text: _SceneText, i: int) -> list[tuple[Words, bool]]:
    """Short phrases (RefCOCO style, ~3.5 words), each flagged whether it fits only ``i``."""
    phrases = [(text.words(i, attrs), text.members(i, attrs) == [i]) for attrs in _COMBOS]
    column, row = text.column(i), text.row(i)
    for attrs in _COMBOS[:2]:
        group = text.members(i, attrs)
        noun = text.words(i, attrs)
        if column != "middle":
            alone = [j for j in group if text.column(j) == column] == [i]
            phrases += [((column, *noun), alone), ((*noun, "on", "the", column), alone)]
        if row != "middle":
            alone = [j for j in group if text.row(j) == row] == [i]
            phrases += [((row, *noun), alone), ((*noun, "at", "the", row), alone)]
        if column != "middle" and row != "middle":
            alone = [j for j in group if (text.row(j), text.column(j)) == (row, column)] == [i]
            phrases.append(((row, column, *noun), alone))
        phrases += [((word, *noun), True) for word in text.extremes(i, group)]
        for j, landmark in text.landmarks(i):
            relation = text.relation(i, j)
            if relation is None:
                continue
            alone = [k for k in group if text.relation(k, j) == relation] == [i]
            article = ("the",) if text.rng.random() < 0.5 else ()
            phrases.append(((*noun, *_relation_words(relation), *article, *landmark), alone))
    return phrases


def _refcoco_plus_phrases(text: _SceneText, i: int) -> list[tuple[Words, bool]]:
    """Appearance only: RefCOCO+ forbids every location word."""
    phrases = []
    for attrs in _COMBOS:
        words = text.words(i, attrs)
        alone = text.members(i, attrs) == [i]
        phrases.append((words, alone))
        phrases.append((("the", *words), alone))
    for attrs in (("colour",), ("size", "colour")):
        alone = text.members(i, attrs) == [i]
        for noun in ("one", "shape"):
            phrases.append(((*text.words(i, attrs), noun), alone))
    return phrases


def _refcocog_phrases(text: _SceneText, i: int) -> list[tuple[Words, bool]]:
    """Longer sentences (RefCOCOg style, ~8 words) built from the same facts."""
    shape = text.shapes[i]
    full_group = text.members(i, _FULL)
    column, row = text.column(i), text.row(i)
    picture = _PICTURE_WORDS[int(text.rng.integers(len(_PICTURE_WORDS)))]
    size_word = _SIZE_WORDS[shape.size][0] if shape.size != "medium" else "medium sized"
    phrases = [
        (("the", shape.category.name, "which", "is", shape.colour, "and", *size_word.split()), full_group == [i]),
    ]
    for j, landmark in text.landmarks(i):
        relation = text.relation(i, j)
        if relation is not None:
            alone = [k for k in full_group if text.relation(k, j) == relation] == [i]
            words = ("the", *text.words(i, _FULL), "that", "is", *_relation_words(relation), "the", *landmark)
            phrases.append((words, alone))
    colour_group = text.members(i, ("colour", "category"))
    if column != "middle":
        alone = [j for j in colour_group if text.column(j) == column] == [i]
        words = ("a", *text.words(i, ("colour", "category")), "on", "the", column, "side")
        phrases.append((words, alone))
    if row != "middle":
        alone = [j for j in full_group if text.row(j) == row] == [i]
        phrases.append((("there", "is", "a", *text.words(i, _FULL), "at", "the", row), alone))
    if column != "middle" and row != "middle":
        alone = [j for j in full_group if (text.row(j), text.column(j)) == (row, column)] == [i]
        phrases.append((("the", *text.words(i, _FULL), "in", "the", row, column, "corner"), alone))
    for word in text.extremes(i, colour_group):
        phrases.append((("the", word, *text.words(i, ("colour", "category")), "in", "the", picture), True))
    return phrases


_PHRASES = {"refcoco": _refcoco_phrases, "refcoco+": _refcoco_plus_phrases, "refcocog": _refcocog_phrases}


def _most_specific(text: _SceneText, i: int, dataset: str) -> Words:
    """The fullest appearance description, said when no phrase fits the target alone."""
    words = text.words(i, _FULL)
    return ("the", *words, "in", "the", "picture") if dataset == "refcocog" else words


def _pick(phrases: list[tuple[Words, bool]], fallback: Words, rng: np.random.Generator) -> list[Words]:
    """1–4 distinct phrases that fit only the target; the fallback when none does."""
    unique = list(dict.fromkeys(words for words, alone in phrases if alone))
    pool = unique or [fallback]
    count = int(rng.choice(_SENTENCES_PER_REF, p=_SENTENCES_PROBS))
    return [pool[j] for j in rng.permutation(len(pool))[:count]]


def _group_phrases(text: _SceneText, group: str | None) -> list[tuple[list[int], list[Words]]]:
    """Multi-target groups (all shapes of a category / colour / both) with ways to say them."""
    shapes = text.shapes
    groups: dict[tuple[int, ...], list[Words]] = {}

    def add(members: list[int], variants: list[Words]) -> None:
        if len(members) >= 2 and all(group is None or shapes[j].category.group == group for j in members):
            groups.setdefault(tuple(members), []).extend(variants)

    for category in {s.category.id: s.category for s in shapes}.values():
        members = [j for j, s in enumerate(shapes) if s.category.id == category.id]
        number = _NUMBER_WORDS.get(len(members), "")
        variants = [("all", category.plural), ("all", "the", category.plural), ("every", category.name)]
        variants += [("the", number, category.plural)] + ([("both", category.plural)] if len(members) == 2 else [])
        add(members, variants)
        for colour in dict.fromkeys(shapes[j].colour for j in members):
            same = [j for j in members if shapes[j].colour == colour]
            count = _NUMBER_WORDS.get(len(same), "")
            add(same, [("the", count, colour, category.plural), ("all", colour, category.plural)])
    for colour in dict.fromkeys(s.colour for s in shapes):
        members = [j for j, s in enumerate(shapes) if s.colour == colour]
        variants = [("all", colour, "shapes"), ("the", colour, "ones"), ("every", colour, "shape")]
        add(members, variants + ([("both", colour, "shapes")] if len(members) == 2 else []))
    return [(list(members), variants) for members, variants in sorted(groups.items())]


def _absent_phrases(text: _SceneText, group: str | None) -> list[Words]:
    """Descriptions of a shape that is not in the image: a present category, a missing colour."""
    rng = text.rng
    present = sorted({s.category.id for s in text.shapes})
    allowed = [c for c in CATEGORIES if group is None or c.group == group]
    near = [c for c in allowed if c.id in present]
    pool = near if near and rng.random() < 0.8 else allowed
    category = pool[int(rng.integers(len(pool)))]
    used = {s.colour for s in text.shapes if s.category.id == category.id}
    colours = [c for c in PALETTE if c not in used]
    colour = colours[int(rng.integers(len(colours)))]
    picture = _PICTURE_WORDS[int(rng.integers(len(_PICTURE_WORDS)))]
    return [
        ("the", colour, category.name),
        (colour, category.name),
        ("a", colour, category.name),
        ("the", colour, category.name, "in", "the", picture),
    ]


def _render(words: Words, sent_id: int, rng: np.random.Generator, long: bool) -> dict[str, Any]:
    """A refer sentence entry: ``raw`` as typed (capitals, punctuation), ``sent``/``tokens`` normalised."""
    raw = " ".join(words)
    if rng.random() < (0.5 if long else 0.3):
        raw = raw[0].upper() + raw[1:]
    ending = rng.random()
    if ending < (0.4 if long else 0.15):
        raw += "."
    elif ending > 0.97:
        raw += "!"
    return {"tokens": list(words), "raw": raw, "sent_id": sent_id, "sent": " ".join(words)}


# --------------------------------------------------------------------------- writers


class _Counter:
    def __init__(self, start: int = 0):
        self.next = start

    def take(self) -> int:
        self.next += 1
        return self.next - 1


class _Spool:
    """Items of one output list, one JSON line each, until the list is complete."""

    def __init__(self, path: Path):
        self.path = path
        self._file = path.open("w", encoding="utf-8")

    def add(self, item: Any) -> None:
        self._file.write(json.dumps(item, separators=(",", ":")) + "\n")

    def close(self) -> None:
        self._file.close()

    def lines(self) -> Iterator[str]:
        with self.path.open(encoding="utf-8") as f:
            for line in f:
                yield line.rstrip("\n")


def _pickle_body(item: Any) -> bytes:
    buffer = io.BytesIO()
    pickler = pickle.Pickler(buffer, protocol=2)
    # no memo: each item stands alone, so items can be streamed into one list
    pickler.fast = True
    pickler.dump(item)
    return buffer.getvalue()[2:-1]  # without PROTO 2 and STOP


def _write_list_pickle(path: Path, items: Iterable[Any]) -> None:
    """Pickle a list (protocol 2) item by item; loads exactly like ``pickle.dump(list(items))``."""
    with path.open("wb") as f:
        f.write(pickle.PROTO + bytes([2]) + pickle.EMPTY_LIST)
        batch: list[bytes] = []
        for item in items:
            batch.append(_pickle_body(item))
            if len(batch) == _PICKLE_BATCH:
                f.write(pickle.MARK + b"".join(batch) + pickle.APPENDS)
                batch = []
        if batch:
            f.write(pickle.MARK + b"".join(batch) + pickle.APPENDS)
        f.write(pickle.STOP)


def _write_json_list(f: Any, lines: Iterable[str]) -> None:
    f.write("[")
    for n, line in enumerate(lines):
        f.write("," if n else "")
        f.write(line)
    f.write("]")


def _write_instances(path: Path, images: _Spool, annotations: _Spool, seed: int) -> None:
    info = {"description": f"nemo_hf synthetic shapes in refer format (seed {seed})", "version": "1.0"}
    categories = [{"supercategory": "shape", "id": c.id, "name": c.name} for c in CATEGORIES]
    with path.open("w", encoding="utf-8") as f:
        f.write('{"info":' + json.dumps(info) + ',"images":')
        _write_json_list(f, images.lines())
        f.write(',"licenses":[],"annotations":')
        _write_json_list(f, annotations.lines())
        f.write(',"categories":' + json.dumps(categories, separators=(",", ":")) + "}")


def _with_split(lines: Iterable[str], scheme: str) -> Iterator[dict[str, Any]]:
    for line in lines:
        ref = json.loads(line)
        ref["split"] = ref.pop("splits")[scheme]
        yield ref


# --------------------------------------------------------------------------- build


@dataclass(frozen=True)
class _Options:
    image_size: tuple[int, int]
    datasets: tuple[str, ...]
    jpeg_quality: int
    rle_share: float
    seed: int


def _ref_dict(
    ref_id: int, image_id: int, ann_id: Any, category_id: Any, splits: dict[str, str], sentences: list[dict]
) -> dict[str, Any]:
    return {
        "sent_ids": [s["sent_id"] for s in sentences],
        "file_name": f"COCO_train2014_{image_id:012d}_{ref_id}.jpg",
        "ann_id": ann_id,
        "ref_id": ref_id,
        "image_id": image_id,
        # the scheme's split is filled in from "splits" when its file is written
        "split": None,
        "sentences": sentences,
        "category_id": category_id,
        "splits": splits,
    }


def _sentences(
    word_lists: list[Words], counter: _Counter, rng: np.random.Generator, long: bool
) -> list[dict[str, Any]]:
    return [_render(words, counter.take(), rng, long) for words in word_lists]


def _google_splits(plan: _Plan, i: int, count: int, rng: np.random.Generator) -> dict[str, list[str]]:
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


@dataclass
class _Sink:
    """One dataset's spooled refs and its running ref / sentence ids."""

    spool: _Spool
    ref_ids: _Counter
    sent_ids: _Counter


def _add_refs(
    name: str,
    sink: _Sink,
    text: _SceneText,
    image: tuple[int, int, str],  # (image index, image id, unc split)
    referred: list[int],
    ann_ids: list[int],
    plan: _Plan,
    google: dict[str, list[str]],
) -> None:
    i, image_id, unc = image
    shapes, rng = text.shapes, text.rng
    if name == "grefcoco":
        for targets, words in _gref_refs(text, referred, plan, i, _SPLIT_GROUP.get(unc)):
            sentences = _sentences(words, sink.sent_ids, rng, long=False)
            anns = [ann_ids[j] for j in targets] or [-1]
            cats = [shapes[j].category.id for j in targets] or [-1]
            ref = _ref_dict(sink.ref_ids.take(), image_id, anns, cats, {"unc": unc}, sentences)
            ref["no_target"] = not targets
            sink.spool.add(ref)
        return
    for n, j in enumerate(referred):
        words = _pick(_PHRASES[name](text, j), _most_specific(text, j, name), rng)
        sentences = _sentences(words, sink.sent_ids, rng, long=name == "refcocog")
        splits = {"umd": plan.umd[i]} if name == "refcocog" else {"unc": unc}
        if name != "refcoco+":
            splits["google"] = google[name][n]
        sink.spool.add(_ref_dict(sink.ref_ids.take(), image_id, ann_ids[j], shapes[j].category.id, splits, sentences))


def _write_outputs(tmp: Path, opts: _Options, images: _Spool, annotations: _Spool, sinks: dict[str, _Sink]) -> None:
    """The final files: one instances.json (copied per dataset) and each scheme's refs file."""
    first_instances = None
    for name in opts.datasets:
        folder = tmp / name
        folder.mkdir()
        if first_instances is None:
            first_instances = folder / "instances.json"
            _write_instances(first_instances, images, annotations, opts.seed)
        else:
            shutil.copyfile(first_instances, folder / "instances.json")
        for scheme, file_name in _SPLIT_FILES[name]:
            split_refs = _with_split(sinks[name].spool.lines(), scheme)
            if file_name.endswith(".json"):
                with (folder / file_name).open("w", encoding="utf-8") as f:
                    _write_json_list(f, (json.dumps(ref, separators=(",", ":")) for ref in split_refs))
            else:
                _write_list_pickle(folder / file_name, split_refs)


def _build(tmp: Path, plan: _Plan, opts: _Options, show_progress: bool) -> None:
    work = tmp / ".work"
    work.mkdir()
    image_dir = tmp / "images" / "train2014"
    image_dir.mkdir(parents=True)
    with contextlib.ExitStack() as open_files:
        images, annotations = _Spool(work / "images.jsonl"), _Spool(work / "annotations.jsonl")
        sinks = {name: _Sink(_Spool(work / f"{name}.jsonl"), _Counter(), _Counter()) for name in opts.datasets}
        spools = [images, annotations, *(sink.spool for sink in sinks.values())]
        for spool in spools:
            open_files.callback(spool.close)
        ann_counter = _Counter(_FIRST_ANN_ID)

        for i in tqdm(range(len(plan.image_ids)), desc="synthetic refer", unit="img", disable=not show_progress):
            # one stream per purpose, so a dataset's text never shifts another's draws
            streams = np.random.SeedSequence(opts.seed, spawn_key=(1, i)).spawn(2 + len(DATASETS))
            scene_rng, split_rng, *text_rngs = (np.random.default_rng(s) for s in streams)
            image_id, unc = plan.image_ids[i], plan.unc[i]
            group = _SPLIT_GROUP.get(unc)
            scene = _make_scene(scene_rng, opts.image_size, plan.levels[i], group)
            file_name = f"COCO_train2014_{image_id:012d}.jpg"
            _draw(scene, scene_rng).save(image_dir / file_name, format="JPEG", quality=opts.jpeg_quality)
            images.add({"id": image_id, "file_name": file_name, "width": scene.width, "height": scene.height})
            ann_ids = [ann_counter.take() for _ in scene.shapes]
            for shape, ann_id in zip(scene.shapes, ann_ids, strict=True):
                encoding = _encoding(ann_id - _FIRST_ANN_ID, opts.rle_share)
                annotations.add(_annotation(shape, ann_id, image_id, scene, encoding))

            referred = _choose_referred(scene, scene_rng, group, at_least=2 if unc == "train" else 1)
            google = _google_splits(plan, i, len(referred), split_rng)
            for name, rng in zip(DATASETS, text_rngs, strict=True):
                if name in sinks:
                    text = _SceneText(scene, rng)
                    _add_refs(name, sinks[name], text, (i, image_id, unc), referred, ann_ids, plan, google)

        for spool in spools:
            spool.close()
        _write_outputs(tmp, opts, images, annotations, sinks)
    shutil.rmtree(work)


def _gref_refs(
    text: _SceneText, referred: list[int], plan: _Plan, i: int, group: str | None
) -> list[tuple[list[int], list[Words]]]:
    """gRefCOCO refs of one image: (target shape indices, sentences); no targets = no-target ref."""
    rng = text.rng
    refs = [([j], _pick(_refcoco_phrases(text, j), _most_specific(text, j, "grefcoco"), rng)) for j in referred]
    groups = _group_phrases(text, group)
    if plan.gref_multi[i] and groups:
        members, variants = groups[int(rng.integers(len(groups)))]
        refs.append((members, _pick([(v, True) for v in variants], variants[0], rng)))
    if plan.gref_no_target[i]:
        variants = _absent_phrases(text, group)
        refs.append(([], _pick([(v, True) for v in variants], variants[0], rng)))
    return refs


def _validate(
    num_images: int, seed: int, image_size: Sequence[int], datasets: Sequence[str], jpeg_quality: int, rle_share: float
) -> None:
    if isinstance(num_images, bool) or not isinstance(num_images, (int, np.integer)):
        raise TypeError(f"num_images must be an int, got {num_images!r}")
    if num_images < MIN_NUM_IMAGES:
        raise ValueError(
            f"num_images={num_images} is too small: at least {MIN_NUM_IMAGES} images are needed so that "
            "every split (unc train/val/testA/testB, umd train/val/test, google train/val/test) is non-empty"
        )
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    if len(image_size) != 2 or any(not isinstance(v, (int, np.integer)) or v < 64 for v in image_size):
        raise ValueError(f"image_size must be (width, height) with both at least 64 pixels, got {image_size!r}")
    unknown = [d for d in datasets if d not in DATASETS]
    if unknown or not datasets or len(set(datasets)) != len(datasets):
        raise ValueError(f"datasets must be distinct names from {', '.join(DATASETS)}; got {list(datasets)!r}")
    if not 1 <= jpeg_quality <= 95:
        raise ValueError(f"jpeg_quality must be in 1..95, got {jpeg_quality!r}")
    if not 0.0 <= rle_share <= 1.0:
        raise ValueError(f"rle_share must be in [0, 1], got {rle_share!r}")


def make_refer_dataset(
    root: str | os.PathLike[str],
    num_images: int = 40,
    seed: int = 0,
    *,
    image_size: tuple[int, int] = (320, 240),
    datasets: Sequence[str] = DATASETS,
    jpeg_quality: int = 90,
    rle_share: float = 0.05,
    show_progress: bool = False,
) -> SyntheticRefer:
    """Write a synthetic refer-format tree of shape scenes to ``root`` and describe it.

    ``image_size`` is the nominal (width, height); each image varies it by up to ±20%.
    ``datasets`` picks which of ``refcoco``, ``refcoco+``, ``refcocog``, ``grefcoco`` get
    folders (the images are shared). ``rle_share`` is the fraction of annotations stored
    as RLE rather than polygons. ``root`` must not exist or be an empty folder; the tree
    appears there complete or not at all. Raises ``ValueError`` for ``num_images`` below
    :data:`MIN_NUM_IMAGES` and for other bad arguments.

    >>> import tempfile, pathlib, json
    >>> out = pathlib.Path(tempfile.mkdtemp()) / "tiny"
    >>> tree = make_refer_dataset(out, num_images=12, seed=3, datasets=("refcoco",))
    >>> instances = json.loads((tree.data_dir("refcoco") / "instances.json").read_text())
    >>> len(instances["images"]), len(list(tree.image_dir.iterdir()))
    (12, 12)
    """
    datasets = tuple(datasets)
    _validate(num_images, seed, image_size, datasets, jpeg_quality, rle_share)
    root = Path(root)
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise FileExistsError(f"{root} already exists and is not an empty folder; choose a new path or remove it")
    root.parent.mkdir(parents=True, exist_ok=True)
    opts = _Options((int(image_size[0]), int(image_size[1])), datasets, int(jpeg_quality), float(rle_share), int(seed))
    plan = _plan(int(num_images), int(seed))
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.", suffix=".partial", dir=root.parent))
    try:
        _build(tmp, plan, opts, show_progress)
        tmp.chmod(0o755)  # mkdtemp makes it private; the tree should read like any folder
        if root.exists():
            root.rmdir()
        tmp.rename(root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return SyntheticRefer(root, int(num_images), datasets)
