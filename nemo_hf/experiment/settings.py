"""What the NeMo experiment runs: one frozen, validated set of settings, and the arms it can compare.

The world is the fair one by default (:data:`~nemo_hf.synthetic.tree.FAIR_WORLD`: few shapes
per image, same-category copies that mostly share a colour, size classes far apart), so
that most sentences need size, position or a relation to single out their target. Every
arm gets the same world, data order, initial weights and number of steps; the arms differ
only in the picture a training sample shows (:mod:`nemo_hf.experiment.arms`). NeMo's own
knobs are a :class:`~nemo_hf.nemo.settings.NeMoSettings`, forwarded whole to every arm.

    >>> settings = ExperimentSettings(max_train_steps=40)
    >>> settings.arms, settings.dataset, settings.nemo.top_k, settings.input_size
    (('none', 'random', 'nemo'), 'refcocog_umd', 20, 128)
    >>> ExperimentSettings(arms=("none", "cutmix"))
    Traceback (most recent call last):
    ...
    ValueError: unknown arm 'cutmix': arms are none, random, nemo (CLIP-mined), oracle and noisy-<sigma> (e.g. noisy-0.75)
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from nemo_hf.modeling.registry import TRAINABLE_SEGMENTER_TYPES
from nemo_hf.nemo.settings import NeMoSettings
from nemo_hf.synthetic.tree import FAIR_WORLD

__all__ = ["ARMS", "BENCHMARK_ARMS", "DEMO_SEGMENTER", "ExperimentSettings", "arm_miner"]

ARMS = ("none", "random", "nemo")  # the demo's
DEMO_SEGMENTER = "nemo-hf/synthetic-segmenter"  # the converged no-augmentation segmenter the demo's arms start from
BENCHMARK_ARMS = ("none", "random", "nemo", "oracle", "noisy-0.25", "noisy-0.75", "noisy-1.5")


def arm_miner(arm: str) -> tuple[str, str | None, float]:
    """``(augmentation, miner, noise)`` of an arm name: how its training pictures are made.

    ``nemo`` mines with the CLIP, ``oracle`` with the ground truth (no false negatives),
    ``noisy-<σ>`` with the ground truth plus Gaussian noise of scale σ.

    >>> arm_miner("none"), arm_miner("nemo"), arm_miner("noisy-0.75")
    (('none', None, 0.0), ('nemo', 'clip', 0.0), ('nemo', 'oracle', 0.75))
    """
    if arm in ("none", "random"):
        return arm, None, 0.0
    if arm == "nemo":
        return "nemo", "clip", 0.0
    if arm == "oracle":
        return "nemo", "oracle", 0.0
    if arm.startswith("noisy-"):
        try:
            noise = float(arm.removeprefix("noisy-"))
        except ValueError:
            noise = -1.0
        if noise > 0:
            return "nemo", "oracle", noise
    raise ValueError(f"unknown arm {arm!r}: arms are none, random, nemo (CLIP-mined), oracle and noisy-<sigma> "
                     "(e.g. noisy-0.75)")


@dataclass(frozen=True)
class ExperimentSettings:
    """The worlds, the segmenter's training and NeMo's settings.

    **Worlds.** Training: ``num_images`` scenes of ``scene_size`` pixels from ``seed``, shapes
    ``object_scale`` times the default radius, ``objects_per_image``, ``same_colour_prob``,
    ``separated_sizes`` and ``distractor_levels`` as :func:`~nemo_hf.synthetic.make_refer_dataset`
    takes them, read as ``dataset``. Evaluation: a separate tree of ``eval_images`` scenes
    from ``eval_seed``, the same world, never mined or trained on; every sentence of every
    split is scored.

    **Segmenter.** ``segmenter`` (one of :data:`~nemo_hf.modeling.registry.TRAINABLE_SEGMENTER_TYPES`)
    on the towers of the CLIP ``backbone``, or the checkpoint ``init_from`` when given (every
    arm then fine-tunes it), trained whole at ``input_size`` pixels for ``max_train_steps`` steps of
    ``train_batch_size`` (``learning_rate`` for the new layers, ``encoder_learning_rate``
    for the towers, ``warmup_steps`` of linear warm-up, then cosine), BCE + Dice.
    ``max_train_samples`` keeps the first N training objects (and so the pool).
    ``eval_steps`` scores ``curve_sentences`` evaluation sentences that often: the
    learning curve.

    **NeMo.** ``nemo`` (its ``seed`` and ``cache_dir`` are the experiment's; ``size`` None is
    the input size); the CLIP-mined arm mines with ``clip`` (mining and segmenting are separate
    roles, as in the paper: the segmenter is the same whichever CLIP mines); the oracle arms drop the
    candidates the expression could fit when ``oracle_tau`` is 1.0 (``None``: keep them).
    """

    num_images: int = 1500
    scene_size: tuple[int, int] = (160, 120)
    object_scale: float = 1.5
    objects_per_image: tuple[int, int] = FAIR_WORLD["objects_per_image"]
    same_colour_prob: float | None = FAIR_WORLD["same_colour_prob"]
    separated_sizes: bool = FAIR_WORLD["separated_sizes"]
    distractor_levels: tuple[float, float, float, float] = FAIR_WORLD["distractor_levels"]
    dataset: str = "refcocog_umd"
    eval_images: int = 1000
    eval_seed: int = 9999
    seed: int = 0
    clip: str = "nemo-hf/synthetic-clip"
    backbone: str = "nemo-hf/synthetic-clip-v1"
    segmenter: str = "clipseg"
    init_from: str | None = None
    input_size: int = 128
    max_train_steps: int = 3000
    max_train_samples: int | None = None
    train_batch_size: int = 32
    learning_rate: float = 1e-3
    encoder_learning_rate: float = 5e-4
    warmup_steps: int = 30
    eval_steps: int | None = 250
    curve_sentences: int = 600
    nemo: NeMoSettings = field(default_factory=lambda: NeMoSettings(tau_image=0.9, top_k=20, mosaic_prob=0.5))
    oracle_tau: float | None = 1.0
    arms: tuple[str, ...] = ARMS

    def __post_init__(self) -> None:
        if not self.arms or len(set(self.arms)) != len(self.arms):
            raise ValueError(f"arms must be a non-empty selection without repeats, got {self.arms!r}")
        for arm in self.arms:
            arm_miner(arm)
        for name in ("num_images", "eval_images", "input_size", "max_train_steps", "train_batch_size",
                     "curve_sentences"):  # fmt: skip
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)!r}")
        for name in ("max_train_samples", "eval_steps"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be positive or None, got {value!r}")
        if self.eval_seed == self.seed:
            raise ValueError(f"eval_seed must differ from seed ({self.seed}): the evaluation world is a separate one")
        if self.segmenter not in TRAINABLE_SEGMENTER_TYPES:
            raise ValueError(f"segmenter must be one of {TRAINABLE_SEGMENTER_TYPES}, got {self.segmenter!r}")
        if not isinstance(self.nemo, NeMoSettings):
            raise TypeError(f"nemo must be a NeMoSettings, got {type(self.nemo).__name__}")

    def world(self) -> dict[str, Any]:
        """The keyword arguments of ``make_refer_dataset`` that shape the world (both trees)."""
        return {"image_size": tuple(self.scene_size), "object_scale": self.object_scale,
                "objects_per_image": tuple(self.objects_per_image), "same_colour_prob": self.same_colour_prob,
                "separated_sizes": self.separated_sizes, "distractor_levels": tuple(self.distractor_levels)}

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready settings (tuples as lists, NeMo's as a nested dict)."""
        return {key: list(value) if isinstance(value, tuple) else value
                for key, value in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ExperimentSettings:
        """The settings :meth:`to_dict` wrote (a run's ``results.json``), validated again.

        >>> settings = ExperimentSettings(seed=3).replace(top_k=7)
        >>> ExperimentSettings.from_dict(settings.to_dict()) == settings
        True
        """
        own = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - set(own))
        if unknown:
            raise ValueError(f"unknown experiment setting(s) {unknown}")
        typed = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items() if k != "nemo"}
        if "nemo" in values:
            typed["nemo"] = NeMoSettings(**values["nemo"])
        return cls(**typed)

    def demo(self) -> ExperimentSettings:
        """``nemo-hf demo``'s settings: every arm fine-tunes the shipped segmenter, converged without mosaics.

        Training each arm from scratch to convergence takes hours on two CPU cores; the
        shipped ``nemo-hf/synthetic-segmenter`` was trained that way (no augmentation, a
        world of another seed, its card says how), and the arms continue from it on this
        world — the authors' schedule also brings mined mosaics in mid-training. One seed.
        """
        return self.finetune(DEMO_SEGMENTER).replace(num_images=600, eval_images=300, max_train_steps=200,
                                                     eval_steps=100, curve_sentences=400)

    def finetune(self, init_from: str) -> ExperimentSettings:
        """Every arm continues the segmenter ``init_from`` (trained without mosaics) at a fine-tune's rates.

        A fifth of the from-scratch rates (2e-4 new layers, 1e-4 towers), no warm-up of the
        rate, and mined mosaics from the first step (no epochs of random ones): the checkpoint
        already reads the world, so a warm-up would only delay what the arms differ in.

        >>> tuned = ExperimentSettings().finetune("runs/seed2/arms/none/final")
        >>> tuned.learning_rate, tuned.encoder_learning_rate, tuned.warmup_steps, tuned.nemo.warmup_epochs
        (0.0002, 0.0001, 0, 0)
        """
        return self.replace(init_from=init_from, learning_rate=2e-4, encoder_learning_rate=1e-4, warmup_steps=0,
                            warmup_epochs=0)

    def quick(self) -> ExperimentSettings:
        """The toy budget every ``--quick`` uses (demo, benchmarks): the whole pipeline in a minute or two.

        Its numbers mean nothing; reports made with it say so.
        """
        small = {} if self.init_from else {"input_size": 64}  # a shipped segmenter keeps its own input size
        return self.replace(num_images=60, eval_images=40, max_train_steps=5, train_batch_size=8, eval_steps=None,
                            curve_sentences=16, top_k=5, **small)

    def replace(self, **changes: Any) -> ExperimentSettings:
        """A copy with some settings changed (validated again); NeMo's by name too: ``replace(top_k=5)``."""
        own = {f.name for f in dataclasses.fields(self)}
        nemo_names = {f.name for f in dataclasses.fields(NeMoSettings)} - own
        nemo_changes = {k: changes.pop(k) for k in list(changes) if k in nemo_names}
        if nemo_changes:
            changes["nemo"] = dataclasses.replace(changes.get("nemo", self.nemo), **nemo_changes)
        return dataclasses.replace(self, **changes)
