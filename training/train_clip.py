"""Train a small CLIP contrastively on the synthetic referring world (the shipped ``nemo-hf/synthetic-clip``).

    python training/train_clip.py --config training/configs/synthetic_clip.yaml
    python training/train_clip.py --config training/configs/synthetic_clip.yaml \\
        --resume_from_checkpoint latest                     # continue a killed run

No real CLIP can be downloaded where the offline demo and the tests run, and a CLIP with
random weights mines negatives no better than chance. This script makes one that knows the
synthetic world: a ``CLIPModel`` from a small config (ViT image tower, text tower, one
tokenizer word per vocabulary word), trained with CLIP's symmetric contrastive loss on
(image, referring expression) pairs.

- **Data**: a synthetic refer tree (``num_images`` scenes, ``data_seed``) read through the
  ``RefCOCO`` builder; every image of the train splits of ``refcoco_unc``, ``refcocoplus_unc``
  and ``refcocog_umd`` with all their expressions: short spatial ones, appearance-only ones
  and long relational ones.
- **Steps**: each draws ``train_batch_size`` distinct images and one expression of each,
  from a generator seeded by (``seed``, step), so a resumed run sees exactly the batches
  the uninterrupted one would.
- **Evaluation**: text→image retrieval R@1/R@5 on a freshly generated tree
  (``eval_images`` scenes, ``eval_seed``) that training never saw, against the chance level.

What lands in ``output_dir`` (a non-empty one is refused unless the run resumes there or
``--overwrite_output_dir`` is given): ``final/``, the model folder (``save_pretrained``:
safetensors, config, tokenizer, image processor; a model card ``README.md``,
``all_results.json`` and ``train_config.yaml``), and beside it ``train_config.yaml`` and
``checkpoints/step_<N>/`` for ``--resume_from_checkpoint``.

With several processes each one computes the loss over its share of the batch (no
cross-process negatives); the shipped model was trained in one process. The code is
``nemo_hf.trainer.clip_training``.
"""

import sys

from nemo_hf.command_line import run_command
from nemo_hf.trainer.clip_training import main

if __name__ == "__main__":  # an error that names its cause prints that, not a traceback (NEMO_HF_DEBUG=1 shows it)
    sys.exit(run_command(lambda: main(sys.argv[1:], description=__doc__)))
