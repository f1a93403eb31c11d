"""Training and evaluation runs: what ``training/*.py``, the experiment and the benchmarks all run.

The scripts in the repository's ``training/`` folder are the commands people type
(``accelerate launch training/train.py …``); the code they run lives here, so an installed
wheel holds it too. One job per module:

- :mod:`~nemo_hf.trainer.segmenter_training` — the referring segmenter's training loop
  (``train.py``): :func:`~nemo_hf.trainer.segmenter_training.train`, ``training_step``;
- :mod:`~nemo_hf.trainer.segmenter_evaluation` — evaluating a checkpoint (``eval_ris.py``);
- :mod:`~nemo_hf.trainer.clip_training` — the small synthetic CLIP (``train_clip.py``);
- :mod:`~nemo_hf.trainer.args` — the settings of a run (:class:`~nemo_hf.trainer.args.TrainingConfig`),
  YAML configs whose keys are the flags, NeMo's settings parsed as declared;
- :mod:`~nemo_hf.trainer.data` — the splits of a data source, the per-sentence view, and
  the training set of each augmentation (none, random mosaics, NeMo);
- :mod:`~nemo_hf.trainer.checkpoints` — atomic checkpoints, rotation and ``latest`` per run;
- :mod:`~nemo_hf.trainer.output_dir` — one run per output folder, the final model in ``final/``;
- :mod:`~nemo_hf.trainer.schedule`, :mod:`~nemo_hf.trainer.tracking`,
  :mod:`~nemo_hf.trainer.process_exit` — the learning-rate schedules, the logs, leaving a
  multi-process run cleanly.

>>> from nemo_hf.trainer.args import TrainingConfig
>>> config = TrainingConfig.parse(
...     ["--synthetic_images", "24", "--augmentation", "random", "--max_train_steps", "5", "--grid", "3"])
>>> config.model.model_name_or_path, config.data.synthetic_images, config.nemo.grid, config.run.max_train_steps
('CIDAS/clipseg-rd64-refined', 24, 3, 5)
"""
