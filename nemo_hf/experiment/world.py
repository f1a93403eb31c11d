"""The experiment's synthetic world: a refer tree written once per settings, read through the RefCOCO builder.

    >>> import tempfile
    >>> from nemo_hf.experiment.settings import ExperimentSettings
    >>> root = build_world(Path(tempfile.mkdtemp()), ExperimentSettings(num_images=12), quiet=True)
    >>> sorted(p.name for p in root.iterdir())[:2]
    ['grefcoco', 'images']
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from nemo_hf.experiment.settings import ExperimentSettings
from nemo_hf.synthetic.tree import make_refer_dataset

__all__ = ["build_world", "image_dir"]


def image_dir(root: Path) -> Path:
    """Where a synthetic tree keeps its COCO-named images."""
    return root / "images" / "train2014"


def build_world(out: Path, settings: ExperimentSettings, *, quiet: bool = False) -> Path:
    """The tree in ``out/refer`` (made once per world settings: a changed world gets a fresh folder)."""
    world = {k: settings.to_dict()[k] for k in ("num_images", "scene_size", "object_scale", "distractor_levels", "seed")}
    tag = json.dumps(world, sort_keys=True)
    root = out / "refer"
    stamp = out / "refer.json"
    if root.exists() and stamp.exists() and stamp.read_text() == tag:
        if not quiet:
            print(f"reusing the synthetic refer tree in {root}")
        return root
    if root.exists():
        shutil.rmtree(root)
    if not quiet:
        print(f"writing a synthetic refer tree: {settings.num_images} scenes of {settings.scene_size[0]}×"
              f"{settings.scene_size[1]}, distractor levels {settings.distractor_levels}, seed {settings.seed}")
    out.mkdir(parents=True, exist_ok=True)
    make_refer_dataset(
        root, num_images=settings.num_images, seed=settings.seed, image_size=settings.scene_size,
        distractor_levels=settings.distractor_levels, object_scale=settings.object_scale, show_progress=not quiet,
    )
    stamp.write_text(tag)
    return root
