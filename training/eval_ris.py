"""Evaluate a referring segmentation checkpoint (local folder or Hub id) on any config and splits.

    python training/eval_ris.py --config outputs/run/train_config.yaml --model_name_or_path outputs/run/final \\
        --eval_splits val testA testB --output_dir outputs/run/eval
    accelerate launch training/eval_ris.py --model_name_or_path me/clipseg-nemo-refcoco \\
        --hub_dataset me/refcoco --dataset_name refcoco_unc --eval_splits val

A training config works as ``--config``: its data keys are used, its training-only keys
and its ``output_dir`` are ignored; ``--model_name_or_path`` then names the fine-tuned
model: ``<output_dir>/final`` of the run (the run's folder itself also works). Writes to
``output_dir`` (one that already holds an evaluation is refused unless
``--overwrite_output_dir`` is given):

- ``eval_results.json`` — per split: ``overall_iou`` (oIoU), ``mean_iou`` (mIoU),
  ``precision@0.5`` … ``@0.9``, ``count``, ``loss`` and the same per difficulty group
  (``distractors=…``, ``size=…``), all per sentence at the original image resolution;
- ``predictions_<split>.png`` — the first ``num_sample_predictions`` sentences of each
  split: image and expression, prediction (with its IoU), ground truth.

Numbers are the same on 1 or N processes (see ``nemo_hf.modeling.evaluation``). The code is
``nemo_hf.trainer.segmenter_evaluation``.
"""

import sys

from nemo_hf.command_line import run_command
from nemo_hf.trainer.segmenter_evaluation import main

if __name__ == "__main__":  # an error that names its cause prints that, not a traceback (NEMO_HF_DEBUG=1 shows it)
    sys.exit(run_command(lambda: main(sys.argv[1:], description=__doc__)))
