"""Evaluate a referring segmentation checkpoint (local folder or Hub id) on any config and splits.

What ``training/eval_ris.py`` runs (:func:`main`); :func:`evaluate_checkpoint` takes an
:class:`~nemo_hf.trainer.args.EvaluationConfig`. A training config works as ``--config``:
its data keys are used, its training-only keys and its ``output_dir`` are ignored;
``--model_name_or_path`` then names the fine-tuned model: ``<output_dir>/final`` of the run
(the run's folder itself also works). Writes to ``output_dir`` (one that already holds an
evaluation is refused unless ``--overwrite_output_dir`` is given):

- ``eval_results.json`` — per split: ``overall_iou`` (oIoU), ``mean_iou`` (mIoU),
  ``precision@0.5`` … ``@0.9``, ``count``, ``loss`` and the same per difficulty group
  (``distractors=…``, ``size=…``), all per sentence at the original image resolution;
- ``predictions_<split>.png`` — the first ``num_sample_predictions`` sentences of each
  split: image and expression, prediction (with its IoU), ground truth.

Numbers are the same on 1 or N processes (see :func:`~nemo_hf.modeling.evaluation.evaluate_referring`).

    >>> config = EvaluationConfig.parse(["--synthetic_images", "24", "--model_name_or_path", "nemo-hf/synthetic-clip"])
    >>> config.evaluation.output_dir, config.data.eval_splits
    ('eval_outputs', ['val'])
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from accelerate import Accelerator
from accelerate.utils import DataLoaderConfiguration
from torch.utils.data import DataLoader

from nemo_hf.modeling.evaluation import evaluate_referring
from nemo_hf.modeling.inputs import RISCollator
from nemo_hf.modeling.loading import load_referring_segmenter
from nemo_hf.modeling.predictions import predict_masks, save_prediction_grid
from nemo_hf.trainer.args import EvaluationConfig, resolve_mixed_precision
from nemo_hf.trainer.data import as_sentences, load_splits
from nemo_hf.trainer.output_dir import EVAL_ENTRIES, claim_output_dir, model_folder
from nemo_hf.trainer.process_exit import exit_now_if_distributed
from nemo_hf.version import __version__

__all__ = ["evaluate_checkpoint", "main"]


def main(argv: Sequence[str] | None = None, description: str | None = None) -> dict[str, Any]:
    """``training/eval_ris.py``: parse the command line (and ``--config``), evaluate; the results."""
    # exits inside evaluate_checkpoint, while its model and process group are still referenced: freeing them on
    # its return can hang under gloo (process_exit; seen in CI at this very return)
    return evaluate_checkpoint(EvaluationConfig.parse(argv, description=description or __doc__), exit_when_done=True)


def evaluate_checkpoint(config: EvaluationConfig, *, exit_when_done: bool = False) -> dict[str, Any]:
    """Evaluate, write ``eval_results.json`` and the prediction PNGs; returns the results.

    ``exit_when_done`` (the script's): a multi-process run leaves the process once everything
    is written, before Python frees the model (:mod:`nemo_hf.trainer.process_exit`)."""
    model_args, data_args, args = config.model, config.data, config.evaluation
    output_dir = Path(args.output_dir)
    model_path = model_folder(model_args.model_name_or_path)
    # split_batches: eval_batch_size means the same batches on any number of processes
    accelerator = Accelerator(
        mixed_precision=resolve_mixed_precision(args.mixed_precision),
        dataloader_config=DataLoaderConfiguration(split_batches=True),
    )
    if args.eval_batch_size % accelerator.num_processes:
        raise ValueError(f"eval_batch_size={args.eval_batch_size} is the batch over all processes and must be "
                         f"divisible by the number of processes ({accelerator.num_processes})")
    claim_output_dir(output_dir, EVAL_ENTRIES, overwrite=args.overwrite_output_dir, holder="an evaluation")
    with accelerator.local_main_process_first():
        raw = load_splits(data_args, data_args.eval_splits)
        splits = {split: as_sentences(raw[split], data_args.max_eval_samples) for split in data_args.eval_splits}
        model, processor = load_referring_segmenter(model_path, revision=model_args.model_revision)
    model = accelerator.prepare(model)
    collate = RISCollator(processor, with_targets=True)
    metrics = {}
    for split, ds in splits.items():
        loader = DataLoader(ds, batch_size=args.eval_batch_size, collate_fn=collate,
                            num_workers=data_args.dataloader_num_workers)
        metrics[split] = evaluate_referring(model, accelerator.prepare(loader), accelerator)
    results = {
        "model": model_path,
        "dataset": data_args.hub_dataset or data_args.dataset_name,
        "num_processes": accelerator.num_processes,
        "mixed_precision": accelerator.mixed_precision,
        "nemo_hf_version": __version__,
        "eval": metrics,
    }
    if accelerator.is_main_process:
        output_dir.mkdir(parents=True, exist_ok=True)
        (output_dir / "eval_results.json").write_text(json.dumps(results, indent=2))
        if args.num_sample_predictions > 0:
            unwrapped = accelerator.unwrap_model(model)
            for split, ds in splits.items():
                rows = ds.select(range(min(args.num_sample_predictions, len(ds))))
                images, sentences, masks = rows["image"], rows["sentence"], rows["mask"]
                predictions = predict_masks(unwrapped, processor, list(images), list(sentences))
                save_prediction_grid(list(images), list(sentences), predictions, list(masks),
                                     output_dir / f"predictions_{split}.png")
        for split, result in metrics.items():
            print(f"{split}: oIoU {result['overall_iou']:.4f} mIoU {result['mean_iou']:.4f} "
                  f"P@0.5 {result['precision@0.5']:.4f} ({result['count']} sentences)")
            if "gres" in result:
                g = result["gres"]
                print(f"{split} (gRefCOCO): cIoU {g['ciou']:.4f} gIoU {g['giou']:.4f} N-acc {g['n_acc']:.4f} "
                      f"T-acc {g['t_acc']:.4f} ({g['no_target_count']} no-target)")
        pictures = " and predictions_<split>.png" if args.num_sample_predictions > 0 else ""
        print(f"saved eval_results.json{pictures} to {output_dir}")
    accelerator.wait_for_everyone()
    accelerator.end_training()
    if exit_when_done:
        exit_now_if_distributed()
    return results
