"""The parts of ``training/train.py`` and ``training/eval_ris.py`` that are not the loop itself.

The scripts keep the Accelerate training and evaluation loops in plain sight; what they
share, and what tests and benchmarks reuse, lives here, one job per module:

- :mod:`~nemo_hf.training.args` — the argument dataclasses, YAML configs whose keys are
  the flags, and the resolved config a run saves;
- :mod:`~nemo_hf.training.data` — the splits of a data source, the per-sentence view, and
  the training set of each augmentation (none, random mosaics, NeMo);
- :mod:`~nemo_hf.training.checkpoints` — atomic checkpoints, rotation and ``latest`` per run;
- :mod:`~nemo_hf.training.output_dir` — one run per output folder, the final model in ``final/``;
- :mod:`~nemo_hf.training.hub_push` — the run's Hub repositories, checked before training, and its pushes;
- :mod:`~nemo_hf.training.tracking` — the JSON lines log and the Accelerate trackers;
- :mod:`~nemo_hf.training.process_exit` — leaving a multi-process run cleanly.

>>> from nemo_hf.training.args import TRAIN_DATACLASSES, parse_arguments
>>> model, data, augmentation, run = parse_arguments(
...     ["--synthetic_images", "24", "--augmentation", "random", "--max_train_steps", "5"], TRAIN_DATACLASSES)
>>> model.model_name_or_path, data.synthetic_images, augmentation.augmentation, run.max_train_steps
('CIDAS/clipseg-rd64-refined', 24, 'random', 5)
"""
