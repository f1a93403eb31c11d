"""One arm of the experiment: its training configuration, built from the settings, and its run, in this process.

Each arm is a :class:`~nemo_hf.trainer.args.TrainingConfig` made here from
:class:`~nemo_hf.experiment.settings.ExperimentSettings` (nothing is read from outside the
package, so an installed wheel runs it), trained by the same loop as ``training/train.py``
(:func:`nemo_hf.trainer.segmenter_training.train`). The arms' configs differ only in
``augmentation`` and ``output_dir``; the arm's resolved ``train_config.yaml`` re-runs it by
hand: ``python training/train.py --config <out>/arms/<arm>/train_config.yaml``.

    >>> from pathlib import Path
    >>> from nemo_hf.experiment.settings import ExperimentSettings
    >>> config = arm_config("random", Path("out"), Path("out/refer"), ExperimentSettings(seed=3))
    >>> config.augmentation.augmentation, config.nemo.seed, config.run.seed, config.model.loss
    ('random', 3, 3, 'bce+dice')
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import datasets

from nemo_hf.experiment.settings import ExperimentSettings
from nemo_hf.experiment.world import image_dir
from nemo_hf.trainer.args import AugmentationArguments, DataArguments, ModelArguments, TrainArguments, TrainingConfig
from nemo_hf.trainer.segmenter_training import train

__all__ = ["arm_config", "fresh_accelerate_state", "train_arm"]


def arm_config(arm: str, out: Path, root: Path, settings: ExperimentSettings) -> TrainingConfig:
    """The training configuration of ``arm`` (``"none"``, ``"random"``, ``"nemo"``) into ``out/arms/<arm>``."""
    cache = str(out / "cache")
    return TrainingConfig(
        model=ModelArguments(model_name_or_path=settings.clip, model_type=settings.segmenter, trainable="all",
                             image_size=settings.input_size, loss="bce+dice"),  # small objects: BCE alone settles on background
        data=DataArguments(dataset_name=settings.dataset, data_dir=str(root), image_dir=str(image_dir(root)),
                           cache_dir=cache, eval_splits=[settings.eval_split],
                           max_eval_samples=64,  # a quick look per epoch; the experiment scores every sentence itself
                           max_train_samples=settings.max_train_samples),
        augmentation=AugmentationArguments(augmentation=arm, clip_model=settings.clip),
        nemo=dataclasses.replace(settings.nemo, seed=settings.seed, cache_dir=cache),
        run=TrainArguments(
            output_dir=str(out / "arms" / arm), overwrite_output_dir=True, seed=settings.seed,
            num_train_epochs=100, max_train_steps=settings.max_train_steps,  # the steps decide
            train_batch_size=settings.train_batch_size, eval_batch_size=64, learning_rate=settings.learning_rate,
            text_encoder_learning_rate=settings.encoder_learning_rate,
            vision_encoder_learning_rate=settings.encoder_learning_rate, weight_decay=1e-4,
            lr_scheduler_type="cosine", num_warmup_steps=30, max_grad_norm=1.0, mixed_precision="no",
            checkpointing_steps="none", report_to="none", logging_steps=50,
        ),
    )


def fresh_accelerate_state() -> None:
    """Forget Accelerate's per-process state, so the next run in this (single) process starts its own."""
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(True)
    GradientState._reset_state()


def train_arm(
    arm: str, out: Path, root: Path, settings: ExperimentSettings, train_rows: datasets.Dataset
) -> tuple[dict[str, Any], float]:
    """Train ``arm`` on ``train_rows`` (for ``"nemo"``: rows that carry their negatives); its results and seconds."""
    print(f"\n## Training arm {arm!r}: {settings.max_train_steps} steps of {settings.train_batch_size}")
    started = time.perf_counter()
    fresh_accelerate_state()
    try:
        results = train(arm_config(arm, out, root, settings), train_rows=train_rows)
    finally:
        fresh_accelerate_state()
    return results, time.perf_counter() - started
