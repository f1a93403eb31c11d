"""Fine-tune a referring segmentation model with Accelerate: NeMo mosaics on the fly, RIS metrics every epoch.

    accelerate launch training/train.py --config training/configs/clipseg_refcoco.yaml
    accelerate launch training/train.py --config training/configs/cris_refcoco.yaml --augmentation none
    python training/train.py --config training/configs/tiny_synthetic.yaml      # CPU, a few minutes
    accelerate launch training/train.py --config training/configs/clipseg_refcoco.yaml \
        --push_to_hub --hub_model_id me/clipseg-nemo-refcoco --hub_strategy checkpoint
    accelerate launch training/train.py --config training/configs/clipseg_refcoco.yaml \
        --push_to_hub --hub_model_id me/clipseg-nemo-refcoco --resume_from_checkpoint hub   # on another machine

Flags override the config (``--augmentation none`` for the baseline ablation). What lands
in ``output_dir`` (a run refuses a non-empty one unless it resumes there,
``--overwrite_output_dir`` is given, or it holds only what a run that saved nothing left):

- ``final/`` — the model folder to upload: the model and processor (``save_pretrained``;
  they load with ``CLIPSegForImageSegmentation.from_pretrained(output_dir / "final")``, or
  for CRIS ``AutoModel.from_pretrained`` once ``nemo_hf.modeling`` is imported),
  ``README.md`` (the model card: what was trained, on which data, how it scored),
  ``all_results.json`` (final metrics per evaluation split, train loss, run facts) and
  ``train_config.yaml``; no training state;
- ``train_config.yaml`` — the resolved arguments (``--config`` reads it back);
- ``checkpoints/step_<N>/`` — full state for ``--resume_from_checkpoint latest``, which
  continues mid-epoch where the checkpoint was taken;
- ``logs/metrics.jsonl`` (always) and TensorBoard events (when installed).

``--push_to_hub`` pushes ``final/`` to ``--hub_model_id`` when training ends and, per
``--hub_strategy``, the model at every checkpoint (``every_save``, the default) or that and
the training state under ``last-checkpoint/`` (``checkpoint``), which
``--resume_from_checkpoint hub`` downloads to continue there. The repository, the token
(``--hub_token``, else ``HF_TOKEN`` or the ``hf auth login`` cache) and the right to write
are checked before any data is built; only the main process pushes; the token is never
written to ``train_config.yaml``. ``--push_dataset_to_hub NS/NAME`` also pushes the
NeMo-mined training set (and the evaluation splits), as config ``<dataset_name>-nemo``,
which trains with NeMo elsewhere with no CLIP. See ``nemo_hf.hub.runs``.

An epoch visits every referred object of the training split once, with one of its
sentences (drawn per epoch), and evaluation scores every sentence of each split (at every
epoch's end, and every ``--eval_steps``: the learning curve in ``all_results.json``). Every
NeMo setting is a flag (``--tau_text``, ``--top_k``, ``--warmup_epochs``, ``--size`` …: see
``--help``). See ``nemo_hf.trainer.data`` for the augmentations.

``train_batch_size`` is the batch over all processes, split between them, and the last
incomplete batch of an epoch is dropped, so a config trains the same model on 1 or N
processes (up to floating-point summation order). Samples are drawn from generators
seeded by (seed, epoch, ref_id, sent_id), not by process, for the same reason.

The loop itself is ``nemo_hf.trainer.segmenter_training`` (in the package, so the experiment
of ``nemo-hf demo`` and the benchmarks run the same code from an installed wheel).
"""

import sys

from nemo_hf.command_line import run_command
from nemo_hf.trainer.segmenter_training import main

if __name__ == "__main__":  # an error that names its cause prints that, not a traceback (NEMO_HF_DEBUG=1 shows it)
    sys.exit(run_command(lambda: main(sys.argv[1:], description=__doc__)))
