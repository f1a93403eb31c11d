"""What the none / random / NeMo experiment runs: one frozen, validated set of settings.

The defaults are the offline demo's (10–15 minutes on two CPU cores);
``benchmarks/nemo_effect.py`` runs the same experiment with a larger budget and several
seeds. Every arm gets the same data, seed, initial weights and number of steps; the
arms differ only in ``augmentation``. NeMo's own knobs are a
:class:`~nemo_hf.nemo.settings.NeMoSettings`, forwarded whole to every arm's training.

    >>> settings = ExperimentSettings(max_train_steps=40)
    >>> settings.arms, settings.dataset, settings.nemo.top_k
    (('none', 'random', 'nemo'), 'refcocog_umd', 20)
    >>> ExperimentSettings(arms=("none", "cutmix"))
    Traceback (most recent call last):
    ...
    ValueError: arms must be a non-empty selection of ('none', 'random', 'nemo'), got ('none', 'cutmix')
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from nemo_hf.modeling.registry import SEGMENTER_TYPES
from nemo_hf.nemo.settings import NeMoSettings

__all__ = ["ARMS", "ExperimentSettings"]

ARMS = ("none", "random", "nemo")


@dataclass(frozen=True)
class ExperimentSettings:
    """The synthetic world, the segmenter's training budget and NeMo's settings.

    World: ``num_images`` scenes of ``scene_size`` pixels with shapes ``object_scale``
    times the default radius, a share of images per distractor level given by
    ``distractor_levels`` (0, 1, 2, 3+), read as ``dataset`` (RefCOCOg-style long,
    relational expressions by default: the paper compares augmentations on G-Ref).

    Segmenter: ``segmenter`` (one of :data:`~nemo_hf.modeling.registry.SEGMENTER_TYPES`) on
    the towers of ``clip`` (the shipped synthetic CLIP), trained whole (``trainable="all"``)
    at ``input_size`` pixels for ``max_train_steps`` steps of ``train_batch_size``, BCE +
    Dice loss, evaluated on ``eval_split`` per sentence. ``max_train_samples`` keeps only
    the first N training objects (and so the mosaic pool): the small-data regime, where a
    model sees each object many times.

    NeMo: ``nemo`` (its ``seed`` and ``cache_dir`` are the experiment's; ``size`` None is
    the input size); negatives mined once with ``clip`` and shared by the arms that use them.
    """

    num_images: int = 1500
    scene_size: tuple[int, int] = (160, 120)
    object_scale: float = 1.5
    distractor_levels: tuple[float, float, float, float] = (0.4, 0.25, 0.2, 0.15)
    dataset: str = "refcocog_umd"
    eval_split: str = "val"
    seed: int = 0
    clip: str = "nemo-hf/synthetic-clip"
    segmenter: str = "clipseg"
    input_size: int = 64
    max_train_steps: int = 900
    max_train_samples: int | None = None
    train_batch_size: int = 32
    learning_rate: float = 1e-3
    encoder_learning_rate: float = 5e-4
    nemo: NeMoSettings = field(default_factory=lambda: NeMoSettings(tau_image=0.9, top_k=20, mosaic_prob=0.5))
    arms: tuple[str, ...] = ARMS

    def __post_init__(self) -> None:
        if not self.arms or any(arm not in ARMS for arm in self.arms) or len(set(self.arms)) != len(self.arms):
            raise ValueError(f"arms must be a non-empty selection of {ARMS}, got {self.arms!r}")
        for name in ("num_images", "input_size", "max_train_steps", "train_batch_size"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)!r}")
        if self.max_train_samples is not None and self.max_train_samples < 1:
            raise ValueError(f"max_train_samples must be positive or None, got {self.max_train_samples!r}")
        if self.segmenter not in SEGMENTER_TYPES:
            raise ValueError(f"segmenter must be one of {SEGMENTER_TYPES}, got {self.segmenter!r}")
        if not isinstance(self.nemo, NeMoSettings):
            raise TypeError(f"nemo must be a NeMoSettings, got {type(self.nemo).__name__}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready settings (tuples as lists, NeMo's as a nested dict)."""
        return {key: list(value) if isinstance(value, tuple) else value
                for key, value in dataclasses.asdict(self).items()}

    def quick(self) -> ExperimentSettings:
        """The toy budget every ``--quick`` uses (demo, benchmarks): the whole pipeline in about a minute.

        Its numbers mean nothing; reports made with it say so.
        """
        return self.replace(num_images=60, max_train_steps=5, train_batch_size=8, top_k=5)

    def replace(self, **changes: Any) -> ExperimentSettings:
        """A copy with some settings changed (validated again); NeMo's by name too: ``replace(top_k=5)``."""
        own = {f.name for f in dataclasses.fields(self)}
        nemo_names = {f.name for f in dataclasses.fields(NeMoSettings)} - own
        nemo_changes = {k: changes.pop(k) for k in list(changes) if k in nemo_names}
        if nemo_changes:
            changes["nemo"] = dataclasses.replace(changes.get("nemo", self.nemo), **nemo_changes)
        return dataclasses.replace(self, **changes)
