"""Evaluate any referring segmenter (local folder or Hub id) on any config and splits, under a protocol by name.

What ``training/eval_ris.py`` runs (:func:`main`); :func:`evaluate_checkpoint` takes an
:class:`~nemo_hf.trainer.args.EvaluationConfig`. The model is anything the registry runs
(:mod:`nemo_hf.modeling.registry`): a CLIPSeg as published (``CIDAS/clipseg-rd64-refined``)
or trained here, a CRIS, a Florence-2 (``florence-community/Florence-2-large``). A training
config works as ``--config``: its data keys are used, its training-only keys and its
``output_dir`` are ignored; ``--model_name_or_path`` then names the fine-tuned model:
``<output_dir>/final`` of the run (the run's folder itself also works). ``--protocol``
chooses how predictions are scored: ``nemo_hf`` (default), or the code of CRIS (``cris``)
or LAVT (``lavt``), so a number can stand beside that paper's table
(:mod:`nemo_hf.metrics.protocols`). Writes to ``output_dir`` (one that already holds an
evaluation is refused unless ``--overwrite_output_dir`` is given):

- ``eval_results.json`` — per split: ``overall_iou`` (oIoU), ``mean_iou`` (mIoU),
  ``precision@0.5`` … ``@0.9``, ``count``, ``loss`` (models that give logits) and the same
  per difficulty group (``distractors=…``, ``size=…``), per sentence; ``objects`` (object
  accuracy, wrong-object rate) where the rows carry ``instances``; and the protocol they
  were computed under, with its source;
- ``eval_results.md`` — the same as tables, one per split, a row per distractor group (and
  size group), every metric's name spelled out (also printed);
- ``model_index.yaml`` — the ``model-index`` block to paste into a model card's metadata;
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

from nemo_hf.hub.cards import evaluation_model_index, metric_names
from nemo_hf.metrics.protocols import NEMO_HF, EvaluationProtocol
from nemo_hf.metrics.protocols import protocol as protocol_named
from nemo_hf.metrics.ris import DEFAULT_THRESHOLDS, precision_key
from nemo_hf.modeling.evaluation import evaluate_referring
from nemo_hf.modeling.inference import produces
from nemo_hf.modeling.inputs import RISCollator
from nemo_hf.modeling.loading import load_referring_segmenter
from nemo_hf.modeling.predictions import predict_masks, save_prediction_grid
from nemo_hf.trainer.args import EvaluationConfig, config_values, resolve_mixed_precision
from nemo_hf.trainer.data import as_sentences, load_splits
from nemo_hf.trainer.output_dir import EVAL_ENTRIES, claim_output_dir, model_folder
from nemo_hf.trainer.process_exit import exit_now_if_distributed
from nemo_hf.version import __version__

__all__ = ["evaluate_checkpoint", "evaluation_tables", "main"]


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
    protocol = protocol_named(args.protocol)
    if produces(model) == "logits":
        model = accelerator.prepare(model)
        collate = RISCollator(processor, with_targets=True)
    else:  # inference only: nothing for DDP to wrap; the architecture makes its own inputs
        model = model.to(accelerator.device)
        collate = RISCollator(processor, with_targets=True, encode=type(model).encode)
    metrics = {}
    for split, ds in splits.items():
        loader = DataLoader(ds, batch_size=args.eval_batch_size, collate_fn=collate,
                            num_workers=data_args.dataloader_num_workers)
        metrics[split] = evaluate_referring(model, accelerator.prepare(loader), accelerator, protocol=protocol,
                                            processor=processor)
    results = {
        "model": model_path,
        "dataset": data_args.hub_dataset or data_args.dataset_name,
        "protocol": {"name": protocol.name, "title": protocol.title, "source": protocol.source,
                     "reported_as": dict(protocol.reported_as)},
        "num_processes": accelerator.num_processes,
        "mixed_precision": accelerator.mixed_precision,
        "nemo_hf_version": __version__,
        "eval": metrics,
    }
    if accelerator.is_main_process:
        output_dir.mkdir(parents=True, exist_ok=True)
        (output_dir / "eval_results.json").write_text(json.dumps(results, indent=2))
        tables = evaluation_tables(metrics, protocol)
        (output_dir / "eval_results.md").write_text(tables)
        (output_dir / "model_index.yaml").write_text(
            evaluation_model_index(metrics, config_values(data_args), model_name=str(model_args.model_name_or_path),
                                   protocol=protocol))
        if args.num_sample_predictions > 0:
            unwrapped = accelerator.unwrap_model(model)
            # the pictures show each mask on its image: at the image's size, whatever frame the protocol scores in
            shown = protocol if protocol.score_side is None else NEMO_HF
            for split, ds in splits.items():
                rows = ds.select(range(min(args.num_sample_predictions, len(ds))))
                images, sentences, masks = rows["image"], rows["sentence"], rows["mask"]
                predictions = predict_masks(unwrapped, processor, list(images), list(sentences), protocol=shown)
                save_prediction_grid(list(images), list(sentences), predictions, list(masks),
                                     output_dir / f"predictions_{split}.png")
        print(tables, end="")
        pictures = ", predictions_<split>.png" if args.num_sample_predictions > 0 else ""
        print(f"saved eval_results.json, eval_results.md, model_index.yaml{pictures} to {output_dir}")
    accelerator.wait_for_everyone()
    accelerator.end_training()
    if exit_when_done:
        exit_now_if_distributed()
    return results


_GROUP_ORDER = ("distractors=0", "distractors=1", "distractors=2", "distractors=3+", "size=small", "size=medium",
                "size=large", "referring=easy", "referring=hard")


def _group_label(name: str) -> str:
    kind, value = name.split("=", 1)
    if kind == "distractors":
        return f"{value} distractor{'' if value == '1' else 's'}"
    return f"{value} objects" if kind == "size" else f"referring {value}"


def evaluation_tables(metrics: dict[str, dict[str, Any]], protocol: EvaluationProtocol = NEMO_HF) -> str:
    """Markdown tables of an evaluation: per split a row for all expressions and one per group, names spelled out.

    Columns: expressions, oIoU, mIoU, Prec@0.5 … 0.9 and, where the rows carried annotated
    objects, object accuracy and the wrong-object rate (:func:`~nemo_hf.hub.cards.metric_names`
    gives each in full under the table).

    >>> result = {"overall_iou": 0.5, "mean_iou": 0.25, "count": 2, "groups": {
    ...     "distractors=1": {"overall_iou": 0.5, "mean_iou": 0.25, "count": 2}}}
    >>> print(evaluation_tables({"val": result}).splitlines()[4])
    | all | 2 | 0.5000 | 0.2500 | — | — | — | — | — | — | — |
    """
    precision = [precision_key(x) for x in DEFAULT_THRESHOLDS]
    keys = ["overall_iou", "mean_iou", *precision, "object_accuracy", "wrong_object_rate"]
    short = {"overall_iou": "oIoU", "mean_iou": "mIoU",
             **{key: f"Prec@{x:g}" for key, x in zip(precision, DEFAULT_THRESHOLDS)},
             "object_accuracy": "object accuracy", "wrong_object_rate": "wrong-object rate"}
    for paper_name, key in protocol.reported_as.items():
        if paper_name not in short[key]:
            short[key] += f" ({protocol.name.upper()}'s \"{paper_name}\")"
    names = metric_names(protocol)
    out = []
    for split, result in metrics.items():
        objects = result.get("objects") or {}
        out += [f"## {split}: {result['count']} expressions, protocol {protocol.name}", "",
                "| group | expressions | " + " | ".join(short[k] for k in keys) + " |",
                "|---" * (len(keys) + 2) + "|"]
        rows = [("all", result, objects)]
        groups = result.get("groups", {})
        for name in sorted(groups, key=lambda n: (_GROUP_ORDER.index(n) if n in _GROUP_ORDER else 99, n)):
            rows.append((_group_label(name), groups[name], objects.get("groups", {}).get(name, {})))
        for label, values, object_values in rows:
            merged = {**values, **{k: object_values[k] for k in ("object_accuracy", "wrong_object_rate")
                                   if k in object_values}}
            cells = [f"{merged[k]:.4f}" if k in merged else "—" for k in keys]
            out.append(f"| {label} | {values['count']} | " + " | ".join(cells) + " |")
        out.append("")
    out.append(f"Protocol {protocol.name}: {protocol.title} (source: {protocol.source}).")
    out += [f"- {short[k]}: {names[k]}" for k in keys]
    return "\n".join(out) + "\n"
