"""The experiment's worlds: a training tree and a separate evaluation tree, read through the RefCOCO builder.

Both trees are written once per world settings (a changed world gets a fresh folder) with
the same knobs and different seeds. The training tree holds every RefCOCO-family dataset
(the demo prints their stats); the evaluation tree only the experiment's, whose every split
is scored: it is never mined or trained on.

    >>> import tempfile
    >>> from nemo_hf.experiment.settings import ExperimentSettings
    >>> settings = ExperimentSettings().quick()
    >>> world = load_world(Path(tempfile.mkdtemp()), settings, quiet=True)
    >>> sorted(world.stats)
    ['eval_referring_hard', 'eval_sentences', 'train_objects', 'train_referring_hard', 'train_sentences']
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets
import numpy as np

from nemo_hf.data.configs import get_variant
from nemo_hf.data.load import load_refcoco, per_sentence
from nemo_hf.data.meaning import referring_hard
from nemo_hf.experiment.settings import ExperimentSettings
from nemo_hf.synthetic.tree import make_refer_dataset

__all__ = ["World", "build_tree", "image_dir", "load_world", "referring_flags"]


def image_dir(root: Path) -> Path:
    """Where a synthetic tree keeps its COCO-named images."""
    return root / "images" / "train2014"


def build_tree(root: Path, num_images: int, seed: int, world: dict[str, Any], *, only: tuple[str, ...] | None = None,
               quiet: bool = False) -> Path:
    """The tree at ``root`` for these arguments, written unless the one there was made with them."""
    tag = json.dumps({"num_images": num_images, "seed": seed, "datasets": only,
                      **{k: list(v) if isinstance(v, tuple) else v for k, v in world.items()}}, sort_keys=True)
    stamp = root.with_name(root.name + ".json")
    if root.exists() and stamp.exists() and stamp.read_text() == tag:
        if not quiet:
            print(f"reusing the synthetic refer tree in {root}")
        return root
    if root.exists():
        shutil.rmtree(root)
    if not quiet:
        print(f"writing a synthetic refer tree: {num_images} scenes, seed {seed}, {world}")
    root.parent.mkdir(parents=True, exist_ok=True)
    extra = {"datasets": only} if only else {}
    make_refer_dataset(root, num_images=num_images, seed=seed, show_progress=not quiet, **world, **extra)
    stamp.write_text(tag)
    return root


@dataclass
class World:
    """The training rows (one per referred object), the evaluation sentences, the trees and what they hold."""

    train: datasets.Dataset
    evaluation: datasets.Dataset
    root: Path
    eval_root: Path
    stats: dict[str, int]


def referring_flags(sentences: datasets.Dataset) -> np.ndarray:
    """Whether each sentence (per-sentence rows with ``needs``) is referring-hard."""
    return np.asarray([referring_hard(needs) for needs in sentences["needs"]], dtype=bool)


def _hard_share(sentences: datasets.Dataset) -> int:
    return int(referring_flags(sentences).sum())


def load_world(out: Path, settings: ExperimentSettings, *, quiet: bool = False) -> World:
    """Both trees (written once) and their rows: the training split, and every sentence of the evaluation tree."""
    folder = get_variant(settings.dataset).folder
    root = build_tree(out / "refer", settings.num_images, settings.seed, settings.world(), quiet=quiet)
    eval_root = build_tree(out / "refer-eval", settings.eval_images, settings.eval_seed, settings.world(),
                           only=(folder,), quiet=quiet)
    train = load_refcoco(settings.dataset, root, image_dir(root), cache_dir=out / "cache")["train"]
    if settings.max_train_samples is not None:  # the arms train on these rows only, and draw negatives from them
        train = train.select(range(min(settings.max_train_samples, len(train))))
    built = load_refcoco(settings.dataset, eval_root, image_dir(eval_root), cache_dir=out / "cache")
    evaluation = datasets.concatenate_datasets([per_sentence(built[split]) for split in built])
    train_sentences = per_sentence(train)
    stats = {"train_objects": len(train), "train_sentences": len(train_sentences),
             "train_referring_hard": _hard_share(train_sentences), "eval_sentences": len(evaluation),
             "eval_referring_hard": _hard_share(evaluation)}  # fmt: skip
    if not quiet:
        print(f"{settings.dataset}: {len(train)} training objects ({stats['train_sentences']} sentences, "
              f"{stats['train_referring_hard']} referring-hard); evaluation: {len(evaluation)} sentences of "
              f"{settings.eval_images} other scenes, {stats['eval_referring_hard']} referring-hard")
    return World(train, evaluation, root, eval_root, stats)
