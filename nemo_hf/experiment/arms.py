"""One arm of the experiment: its training configuration, built from the settings, and its run, in this process.

Each arm is a :class:`~nemo_hf.trainer.args.TrainingConfig` made here from
:class:`~nemo_hf.experiment.settings.ExperimentSettings` (nothing is read from outside the
package, so an installed wheel runs it), trained by the same loop as ``training/train.py``
(:func:`nemo_hf.trainer.segmenter_training.train`) on rows the experiment hands it (the
training split, carrying the arm's negatives for the mined arms) and scored as it learns on
a fixed subset of the evaluation world. The arms' configs differ only in ``augmentation``
and ``output_dir``.

A finished arm (its ``final/`` written with the same configuration, from the same starting
weights) is not trained again: an interrupted experiment resumes with the arms it has not
finished.

    >>> from pathlib import Path
    >>> from nemo_hf.experiment.settings import ExperimentSettings
    >>> config = arm_config("oracle", Path("out"), Path("out/refer"), ExperimentSettings(seed=3))
    >>> config.augmentation.augmentation, config.nemo.seed, config.run.seed, config.model.loss
    ('nemo', 3, 3, 'bce+dice')
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import torch
import yaml

from nemo_hf.experiment.miners import nemo_settings
from nemo_hf.experiment.settings import ExperimentSettings, arm_miner
from nemo_hf.experiment.world import image_dir
from nemo_hf.pretrained import resolve_pretrained
from nemo_hf.trainer.args import (
    TRAIN_DATACLASSES,
    AugmentationArguments,
    DataArguments,
    ModelArguments,
    TrainArguments,
    TrainingConfig,
)
from nemo_hf.trainer.segmenter_training import train

__all__ = ["CURVE_SPLIT", "arm_config", "curve_subset", "finished_results", "fresh_accelerate_state", "start_weights",
           "train_arm"]

CURVE_SPLIT = "curve"  # the evaluation rows the learning curve scores, handed to the training loop by name
START_STAMP = "start_weights.json"  # in final/: the weights the arm started from, by name and content


def arm_config(arm: str, out: Path, root: Path, settings: ExperimentSettings) -> TrainingConfig:
    """The training configuration of ``arm`` into ``out/arms/<arm>``, on the training tree at ``root``."""
    augmentation, _, _ = arm_miner(arm)
    nemo = nemo_settings(settings, out)
    return TrainingConfig(
        model=ModelArguments(model_name_or_path=settings.init_from or settings.backbone, model_type=(
            None if settings.init_from else settings.segmenter), trainable="all", image_size=(
            None if settings.init_from else settings.input_size), loss="bce+dice"),  # BCE alone settles on background
        data=DataArguments(dataset_name=settings.dataset, data_dir=str(root), image_dir=str(image_dir(root)),
                           cache_dir=nemo.cache_dir, eval_splits=[CURVE_SPLIT],
                           max_train_samples=settings.max_train_samples),
        augmentation=AugmentationArguments(augmentation=augmentation, clip_model=settings.clip),
        nemo=nemo,
        run=TrainArguments(
            output_dir=str(out / "arms" / arm), overwrite_output_dir=True, seed=settings.seed,
            num_train_epochs=1000, max_train_steps=settings.max_train_steps,  # the steps decide
            train_batch_size=settings.train_batch_size, eval_batch_size=64, learning_rate=settings.learning_rate,
            text_encoder_learning_rate=settings.encoder_learning_rate,
            vision_encoder_learning_rate=settings.encoder_learning_rate, weight_decay=1e-4,
            lr_scheduler_type="cosine", num_warmup_steps=settings.warmup_steps, max_grad_norm=1.0,
            mixed_precision="no", checkpointing_steps="none", report_to="none", logging_steps=50,
            eval_strategy="steps" if settings.eval_steps else "epoch", eval_steps=settings.eval_steps,
        ),
    )


def fresh_accelerate_state() -> None:
    """Forget Accelerate's per-process state, so the next run in this (single) process starts its own."""
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(True)
    GradientState._reset_state()


def _weights(name: str) -> dict[str, str | None]:
    """A model by name and by the SHA-256 of its ``model.safetensors`` (None for a Hub id with no local file)."""
    weights = Path(resolve_pretrained(name)) / "model.safetensors"
    return {"model": name, "sha256": hashlib.sha256(weights.read_bytes()).hexdigest() if weights.is_file() else None}


def start_weights(settings: ExperimentSettings, arm: str | None = None) -> dict[str, Any]:
    """What an arm's result depends on beyond its configuration: the weights it starts from, and those that mine.

    A shipped model keeps its name across releases while its weights change (a new
    ``nemo-hf/synthetic-segmenter``, a retrained ``nemo-hf/synthetic-clip``), and a folder can
    be trained again in place, so a name alone cannot say a finished arm still stands. For an
    ``arm`` mined by the CLIP, the CLIP's weights are part of it too: its negatives, and so its
    pictures, change with them. A checkpoint with no local weights file (a Hub id) is known by
    its name only.

    >>> start_weights(ExperimentSettings())["model"], len(start_weights(ExperimentSettings())["sha256"])
    ('nemo-hf/synthetic-clip-v1', 64)
    >>> start_weights(ExperimentSettings(), "nemo")["clip"]["model"], "clip" in start_weights(ExperimentSettings(), "random")
    ('nemo-hf/synthetic-clip', False)
    """
    stamp: dict[str, Any] = _weights(settings.init_from or settings.backbone)
    if arm is not None and arm_miner(arm)[1] == "clip":
        stamp["clip"] = _weights(settings.clip)
    return stamp


def finished_results(config: TrainingConfig, start: dict[str, str | None] | None = None) -> dict[str, Any] | None:
    """The results of a run already finished with exactly ``config`` (and from the weights ``start``), or None.

    A setting added to the configuration since that run counts as the same when it is at its
    default (which reproduces the runs made before it existed). With ``start``
    (:func:`start_weights`), a run whose recorded starting weights differ, or were not
    recorded, does not count.
    """
    final = Path(config.run.output_dir) / "final"
    if not (final / "all_results.json").is_file() or not (final / "train_config.yaml").is_file():
        return None
    if start is not None and (not (final / START_STAMP).is_file() or
                              json.loads((final / START_STAMP).read_text()) != start):
        return None
    saved = yaml.safe_load((final / "train_config.yaml").read_text())
    wanted = yaml.safe_load(yaml.safe_dump(config.to_dict()))
    defaults = yaml.safe_load(yaml.safe_dump(_defaults()))
    if any(saved.get(key, defaults.get(key)) != value for key, value in wanted.items()):
        return None
    return json.loads((final / "all_results.json").read_text())


def _defaults() -> dict[str, Any]:
    """Every training setting's default, flat (as a saved config holds them)."""
    values: dict[str, Any] = {}
    for cls in TRAIN_DATACLASSES:
        for field in dataclasses.fields(cls):
            if field.default is not dataclasses.MISSING:
                values[field.name] = field.default
            elif field.default_factory is not dataclasses.MISSING:
                values[field.name] = field.default_factory()
    return values


def train_arm(
    arm: str, out: Path, root: Path, settings: ExperimentSettings, train_rows: datasets.Dataset,
    curve_rows: datasets.Dataset, *, reuse: bool = True,
) -> tuple[dict[str, Any], float]:
    """Train ``arm`` on ``train_rows`` (for a mined arm: rows carrying its negatives); its results and seconds.

    ``curve_rows`` (per-sentence evaluation rows) are scored every ``settings.eval_steps``.
    With ``reuse``, an arm already finished with the same configuration is read back.
    """
    config = arm_config(arm, out, root, settings)
    start = start_weights(settings, arm)
    if reuse and (done := finished_results(config, start)) is not None:
        print(f"\n## Arm {arm!r}: finished before, read back from {config.run.output_dir}")
        return done, float(done.get("train_runtime_s", 0.0))
    print(f"\n## Training arm {arm!r}: {settings.max_train_steps} steps of {settings.train_batch_size}")
    started = time.perf_counter()
    # denormal floats make these small models up to 10x slower on CPUs; flushing them to zero (back to torch's
    # default afterwards) changes no figure that matters
    torch.set_flush_denormal(True)
    fresh_accelerate_state()
    try:
        results = train(config, train_rows=train_rows, eval_rows={CURVE_SPLIT: curve_rows})
    finally:
        fresh_accelerate_state()
        torch.set_flush_denormal(False)
    (Path(config.run.output_dir) / "final" / START_STAMP).write_text(json.dumps(start))
    return results, time.perf_counter() - started


def curve_subset(evaluation: datasets.Dataset, count: int, seed: int) -> datasets.Dataset:
    """A fixed subset of the evaluation sentences for the learning curve (the same for every arm of a seed)."""
    picked = np.sort(np.random.default_rng([seed, 7]).choice(len(evaluation), min(count, len(evaluation)),
                                                             replace=False))
    return evaluation.select(picked.tolist())

