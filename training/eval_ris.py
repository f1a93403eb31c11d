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

Numbers are the same on 1 or N processes (see ``nemo_hf.modeling.evaluate_referring``).
"""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from accelerate import Accelerator
from accelerate.utils import DataLoaderConfiguration
from torch.utils.data import DataLoader

import nemo_hf
from nemo_hf.modeling import (
    RISCollator,
    evaluate_referring,
    load_referring_segmenter,
    predict_masks,
    save_prediction_grid,
)
from nemo_hf.training.args import (
    EVALUATE_DATACLASSES,
    AugmentationArguments,
    TrainArguments,
    parse_arguments,
    resolve_mixed_precision,
)
from nemo_hf.training.data import as_sentences, load_splits
from nemo_hf.training.output_dir import EVAL_ENTRIES, claim_output_dir, model_folder
from nemo_hf.training.process_exit import exit_now_if_distributed


def _fields(*classes: type) -> set[str]:
    return {f.name for cls in classes for f in dataclasses.fields(cls)}


# keys of a training config that mean nothing here; its output_dir is the training run's folder, not this one's
IGNORED_TRAINING_KEYS = tuple(sorted(
    _fields(AugmentationArguments, TrainArguments) - _fields(*EVALUATE_DATACLASSES) | {"output_dir", "overwrite_output_dir"}
))


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Evaluate, write ``eval_results.json`` and the prediction PNGs; returns the results."""
    model_args, data_args, args = parse_arguments(
        argv, EVALUATE_DATACLASSES, ignored_config_keys=IGNORED_TRAINING_KEYS, description=__doc__
    )
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
    claim_output_dir(output_dir, EVAL_ENTRIES, overwrite=args.overwrite_output_dir)
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
        "nemo_hf_version": nemo_hf.__version__,
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
    # here, not after main returns: freeing main's DDP model and its gloo group can hang (process_exit)
    exit_now_if_distributed()
    return results


if __name__ == "__main__":
    main(sys.argv[1:])
