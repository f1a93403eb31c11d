"""The whole tree: :func:`make_refer_dataset` draws every image and writes every refer file.

>>> import tempfile, pathlib
>>> tree = make_refer_dataset(pathlib.Path(tempfile.mkdtemp()) / "refer", 12, datasets=("refcoco+",))
>>> sorted(p.name for p in tree.data_dir("refcoco+").iterdir())
['instances.json', 'refs(unc).p']
"""

from __future__ import annotations

import contextlib
import math
import numbers
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from nemo_hf.data.meaning import needed_kinds
from nemo_hf.synthetic.expressions import (
    PHRASES,
    Phrase,
    SceneText,
    gref_refs,
    most_specific,
    pick,
    render,
)
from nemo_hf.synthetic.scenes import WorldRules, choose_referred, draw, make_scene
from nemo_hf.synthetic.splits import (
    MIN_NUM_IMAGES,
    SPLIT_GROUP,
    Plan,
    google_splits,
    make_plan,
)
from nemo_hf.synthetic.writers import (
    FIRST_ANN_ID,
    Counter,
    Sink,
    Spool,
    annotation,
    encoding_of,
    ref_dict,
    write_outputs,
)

DATASETS = ("refcoco", "refcoco+", "refcocog", "grefcoco")
EQUAL_LEVELS = (0.25, 0.25, 0.25, 0.25)

FAIR_WORLD: Mapping[str, Any] = MappingProxyType({
    "objects_per_image": (2, 4),
    "same_colour_prob": 0.9,
    "separated_sizes": True,
    "distractor_levels": (0.1, 0.4, 0.3, 0.2),
})  # fmt: skip
"""Keyword arguments of :func:`make_refer_dataset` for a world where category and colour
rarely suffice: few shapes per image, most images with 1–5 copies of one category, copies
sharing a colour 90% of the time and size classes that can be told apart. A tenth of the
images have a lone primary shape, and their other shapes are referred to as well: an easy
stratum beside the hard one. About 70% of RefCOCO sentences then need size, position or
a relation (21% in the default world, 3% of RefCOCOg's); 4,500 images gave 1,801 such
sentences in RefCOCO unc val (3,800 gave 1,448).

>>> FAIR_WORLD["same_colour_prob"]
0.9
"""


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


@dataclass(frozen=True)
class _Options:
    image_size: tuple[int, int]
    datasets: tuple[str, ...]
    jpeg_quality: int
    rle_share: float
    seed: int
    level_weights: tuple[float, ...]
    object_scale: float
    rules: WorldRules


def _sentences(
    phrases: list[Phrase], counter: Counter, text: SceneText, targets: list[int], long: bool
) -> list[dict]:
    """Refer sentence entries with their ground truth: what each states and what it needs.

    ``needs`` is only defined for one target (a group or an absent shape has none to single out).
    """
    objects = text.objects()
    out = []
    for phrase in phrases:
        entry = render(phrase.words, counter.take(), text.rng, long)
        entry["needs"] = needed_kinds(phrase.meaning, objects, text.frame, targets[0]) if len(targets) == 1 else None
        entry["meaning"] = phrase.meaning
        out.append(entry)
    return out


def _add_refs(
    name: str,
    sink: Sink,
    text: SceneText,
    image: tuple[int, int, str],  # (image index, image id, unc split)
    referred: list[int],
    ann_ids: list[int],
    plan: Plan,
    google: dict[str, list[str]],
) -> None:
    i, image_id, unc = image
    shapes, rng = text.shapes, text.rng
    if name == "grefcoco":
        group = SPLIT_GROUP.get(unc)
        for targets, phrases in gref_refs(text, referred, group, plan.gref_multi[i], plan.gref_no_target[i]):
            sentences = _sentences(phrases, sink.sent_ids, text, targets, long=False)
            anns = [ann_ids[j] for j in targets] or [-1]
            cats = [shapes[j].category.id for j in targets] or [-1]
            ref = ref_dict(sink.ref_ids.take(), image_id, anns, cats, {"unc": unc}, sentences)
            ref["no_target"] = not targets
            sink.spool.add(ref)
        return
    for n, j in enumerate(referred):
        phrases = pick(PHRASES[name](text, j), most_specific(text, j, name), rng)
        sentences = _sentences(phrases, sink.sent_ids, text, [j], long=name == "refcocog")
        splits = {"umd": plan.umd[i]} if name == "refcocog" else {"unc": unc}
        if name != "refcoco+":
            splits["google"] = google[name][n]
        sink.spool.add(ref_dict(sink.ref_ids.take(), image_id, ann_ids[j], shapes[j].category.id, splits, sentences))


def _build(tmp: Path, plan: Plan, opts: _Options, show_progress: bool) -> None:
    work = tmp / ".work"
    work.mkdir()
    image_dir = tmp / "images" / "train2014"
    image_dir.mkdir(parents=True)
    with contextlib.ExitStack() as open_files:
        images, annotations = Spool(work / "images.jsonl"), Spool(work / "annotations.jsonl")
        sinks = {name: Sink(Spool(work / f"{name}.jsonl"), Counter(), Counter()) for name in opts.datasets}
        spools = [images, annotations, *(sink.spool for sink in sinks.values())]
        for spool in spools:
            open_files.callback(spool.close)
        ann_counter = Counter(FIRST_ANN_ID)
        levels = {level for level, weight in enumerate(opts.level_weights) if weight > 0}

        for i in tqdm(range(len(plan.image_ids)), desc="synthetic refer", unit="img", disable=not show_progress):
            # one stream per purpose, so a dataset's text never shifts another's draws
            streams = np.random.SeedSequence(opts.seed, spawn_key=(1, i)).spawn(2 + len(DATASETS))
            scene_rng, split_rng, *text_rngs = (np.random.default_rng(s) for s in streams)
            image_id, unc = plan.image_ids[i], plan.unc[i]
            group = SPLIT_GROUP.get(unc)
            scene = make_scene(scene_rng, opts.image_size, plan.levels[i], group, opts.object_scale, opts.rules)
            file_name = f"COCO_train2014_{image_id:012d}.jpg"
            draw(scene, scene_rng).save(image_dir / file_name, format="JPEG", quality=opts.jpeg_quality)
            images.add({"id": image_id, "file_name": file_name, "width": scene.width, "height": scene.height})
            ann_ids = [ann_counter.take() for _ in scene.shapes]
            for shape, ann_id in zip(scene.shapes, ann_ids, strict=True):
                encoding = encoding_of(ann_id - FIRST_ANN_ID, opts.rle_share)
                annotations.add(annotation(shape, ann_id, image_id, scene, encoding))

            at_least = 2 if unc == "train" else 1
            referred = choose_referred(scene, scene_rng, group, at_least, levels)
            google = google_splits(plan, i, len(referred), split_rng)
            for name, rng in zip(DATASETS, text_rngs, strict=True):
                if name in sinks:
                    text = SceneText(scene, rng)
                    _add_refs(name, sinks[name], text, (i, image_id, unc), referred, ann_ids, plan, google)

        for spool in spools:
            spool.close()
        write_outputs(tmp, opts.datasets, opts.seed, images, annotations, sinks)
    shutil.rmtree(work)


def _level_weights(value: Any) -> tuple[float, ...]:
    """``distractor_levels`` as 4 floats, or a ValueError naming what was given."""
    ordered = isinstance(value, (Sequence, np.ndarray)) and not isinstance(value, (str, bytes))
    weights = tuple(value) if ordered else ()  # a mapping or a set has no order of levels
    valid = len(weights) == 4 and all(
        isinstance(w, numbers.Real) and not isinstance(w, bool) and math.isfinite(w) and w >= 0 for w in weights
    )
    if not valid or sum(weights) <= 0:
        raise ValueError(
            "distractor_levels must be 4 non-negative finite weights (for levels 0, 1, 2, 3+) "
            f"with a positive sum, e.g. (0.4, 0.3, 0.2, 0.1); got {value!r}"
        )
    return tuple(float(w) for w in weights)


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
    distractor_levels: Sequence[float] = EQUAL_LEVELS,
    object_scale: float = 1.0,
    objects_per_image: tuple[int, int] = (2, 6),
    same_colour_prob: float | None = None,
    separated_sizes: bool = False,
    show_progress: bool = False,
) -> SyntheticRefer:
    """Write a synthetic refer-format tree of shape scenes to ``root`` and describe it.

    ``image_size`` is the nominal (width, height); each image varies it by up to ±20%.
    Shapes are sized by the shorter side; where that would draw them under 6 px in radius
    (shorter side under ~110 px), the size scale is squeezed into [6 px, largest], so
    96–128 px images still hold visible shapes of three ordered sizes, 6 px apart.
    ``datasets`` picks which of ``refcoco``, ``refcoco+``, ``refcocog``, ``grefcoco`` get
    folders (the images are shared). ``rle_share`` is the fraction of annotations stored
    as RLE rather than polygons. ``root`` must not exist or be an empty folder; the tree
    appears there complete or not at all. Raises ``ValueError`` for ``num_images`` below
    :data:`MIN_NUM_IMAGES` and for other bad arguments.

    ``distractor_levels`` holds relative weights of the distractor levels 0, 1, 2 and 3+
    (e.g. ``(0.4, 0.3, 0.2, 0.1)``: an easy majority and a hard stratum). Each image gets
    one level, the images' shares following the weights as closely as whole counts allow;
    an image of level ``L`` holds ``L + 1`` shapes of its primary category (3+: 4–6) and
    one of each other category. In the built dataset's ``distractors`` column, the primary
    shapes' refs read ``L`` (3+: 3, 4 or 5) and the other shapes' refs read 0. Every image
    refers to its first primary shape, so it shows its level; the other shapes are
    referred to at random, so refs lean towards 0 more than images do. A level of weight
    0 appears in no one-object ref: shapes of that level are not referred to, so
    ``(0, 0, 0, 1)`` gives only refs with 3+ distractors and ``(1, 0, 0, 0)`` only refs
    with none. gRefCOCO's multi-target and no-target refs stand outside this scheme.

    ``object_scale`` (0.5–2) multiplies every shape's radius: 1.5 gives shapes closer to
    RefCOCO's share of the image, which keeps them visible in a 2×2 mosaic of a small
    input; crowded scenes then fall back to smaller sizes more often.

    ``objects_per_image``, ``same_colour_prob`` and ``separated_sizes`` set how scenes are
    populated (:class:`~nemo_hf.synthetic.scenes.WorldRules`: shapes per image, how often
    copies of a category share a colour, size classes apart and equally common). Their
    defaults draw the original world, file for file; :data:`FAIR_WORLD` is a preset in
    which category and colour alone rarely single a target out.

    Every annotation carries ``attributes`` (``colour``, ``size`` class, ``centre``
    ``[x, y]``) and every sentence ``meaning`` (what it states,
    :mod:`nemo_hf.data.meaning`) and ``needs`` (the smallest set of kinds among
    category, colour, size, position, relation that singles its target out;
    ``None`` where nothing it says does, and for gRefCOCO's multi- and no-target refs).

    >>> import tempfile, pathlib, json
    >>> out = pathlib.Path(tempfile.mkdtemp()) / "tiny"
    >>> tree = make_refer_dataset(out, num_images=12, seed=3, datasets=("refcoco",))
    >>> instances = json.loads((tree.data_dir("refcoco") / "instances.json").read_text())
    >>> len(instances["images"]), len(list(tree.image_dir.iterdir()))
    (12, 12)

    Only hard refs, their distractors counted from the files:

    >>> import collections, pickle
    >>> hard = make_refer_dataset(out.with_name("hard"), 12, datasets=("refcoco",), distractor_levels=(0, 0, 0, 1))
    >>> anns = json.loads((hard.data_dir("refcoco") / "instances.json").read_text())["annotations"]
    >>> per_category = collections.Counter((a["image_id"], a["category_id"]) for a in anns)
    >>> refs = pickle.loads((hard.data_dir("refcoco") / "refs(unc).p").read_bytes())
    >>> min(per_category[r["image_id"], r["category_id"]] - 1 for r in refs)
    3
    """
    datasets = tuple(datasets)
    _validate(num_images, seed, image_size, datasets, jpeg_quality, rle_share)
    level_weights = _level_weights(distractor_levels)
    if not (isinstance(object_scale, (int, float)) and 0.5 <= float(object_scale) <= 2.0):
        raise ValueError(f"object_scale must be a number in [0.5, 2], got {object_scale!r}")
    span = tuple(objects_per_image) if isinstance(objects_per_image, (list, tuple)) else objects_per_image
    rules = WorldRules(span, same_colour_prob, separated_sizes)  # type: ignore[arg-type]  (validates)
    root = Path(root)
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise FileExistsError(f"{root} already exists and is not an empty folder; choose a new path or remove it")
    root.parent.mkdir(parents=True, exist_ok=True)
    size = (int(image_size[0]), int(image_size[1]))
    opts = _Options(
        size, datasets, int(jpeg_quality), float(rle_share), int(seed), level_weights, float(object_scale), rules
    )
    plan = make_plan(int(num_images), int(seed), level_weights)
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
