"""Fine-tune a referring segmentation model with Accelerate: NeMo mosaics on the fly, RIS metrics every epoch.

    accelerate launch training/train.py --config training/configs/clipseg_refcoco.yaml
    accelerate launch training/train.py --config training/configs/cris_refcoco.yaml --augmentation none
    python training/train.py --config training/configs/tiny_synthetic.yaml      # CPU, a few minutes
    accelerate launch training/train.py --config training/configs/clipseg_refcoco.yaml \
        --push_to_hub --hub_model_id me/clipseg-nemo-refcoco --hub_strategy checkpoint
    accelerate launch training/train.py --config training/configs/clipseg_refcoco.yaml \
        --push_to_hub --hub_model_id me/clipseg-nemo-refcoco --resume_from_checkpoint hub   # on another machine

Flags override the config (``--augmentation none`` for the baseline ablation). What lands
in ``output_dir`` (a run refuses a non-empty one unless it resumes there or
``--overwrite_output_dir`` is given):

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
which trains with NeMo elsewhere with no CLIP. See ``nemo_hf.training.hub_push``.

An epoch visits every referred object of the training split once, with one of its
sentences (drawn per epoch), and evaluation scores every sentence of each split. See
``nemo_hf.training.data`` for the augmentations.

``train_batch_size`` is the batch over all processes, split between them, and the last
incomplete batch of an epoch is dropped, so a config trains the same model on 1 or N
processes (up to floating-point summation order). Samples are drawn from generators
seeded by (seed, epoch, ref_id, sent_id), not by process, for the same reason.
"""

from __future__ import annotations

import json
import math
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.utils import DataLoaderConfiguration, ProjectConfiguration, set_seed
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

import nemo_hf
from nemo_hf.hub import model_source, render_model_card
from nemo_hf.modeling import (
    PartwiseSegmenter,
    RISCollator,
    evaluate_referring,
    load_referring_segmenter,
    per_sample_bce,
    per_sample_dice,
)
from nemo_hf.training.args import (
    TRAIN_DATACLASSES,
    TrainArguments,
    config_values,
    parse_arguments,
    resolve_mixed_precision,
    save_config,
)
from nemo_hf.training.checkpoints import find_checkpoint, save_checkpoint, starting_state
from nemo_hf.training.data import as_sentences, build_train_dataset, load_splits
from nemo_hf.training.hub_push import HubRun
from nemo_hf.training.output_dir import FINAL_DIR, TRAIN_ENTRIES, claim_output_dir, writing_final
from nemo_hf.training.process_exit import exit_now_if_distributed
from nemo_hf.training.schedule import build_scheduler
from nemo_hf.training.tracking import flatten_scalars, make_trackers


def parameter_groups(model: PartwiseSegmenter, args: TrainArguments) -> list[dict[str, Any]]:
    """AdamW groups: per trainable part its learning rate; no weight decay on biases and norms."""
    text_rate = args.text_encoder_learning_rate or args.learning_rate
    rates = {"decoder": args.learning_rate, "text": text_rate, "vision": args.vision_encoder_learning_rate or text_rate}
    groups = []
    for part, params in model.trainable_parameters().items():
        decay = [p for p in params if p.ndim >= 2]
        plain = [p for p in params if p.ndim < 2]
        groups.append({"params": decay, "lr": rates[part], "weight_decay": args.weight_decay})
        groups.append({"params": plain, "lr": rates[part], "weight_decay": 0.0})
    return [group for group in groups if group["params"]]


class RunningLoss:
    """Sum and count of micro-batch losses: this process's part since (re)start, plus the part carried in a checkpoint.

    ``total`` is collective (it reduces over processes). Each micro-batch loss is the mean
    over this process's share of the batch, so the mean over processes is the batch mean.
    """

    def __init__(self, device: torch.device, carried_sum: float = 0.0, carried_count: int = 0) -> None:
        self.local_sum = torch.zeros((), dtype=torch.float64, device=device)
        self.local_count = 0
        self.carried_sum, self.carried_count = carried_sum, carried_count

    def add(self, loss: torch.Tensor) -> None:
        """Add one micro-batch loss (no synchronisation)."""
        self.local_sum += loss.detach().double()
        self.local_count += 1

    def total(self, accelerator: Accelerator) -> tuple[float, int]:
        """``(sum, count)`` over all processes and the carried part."""
        reduced = accelerator.reduce(self.local_sum.clone(), reduction="sum").item()
        return self.carried_sum + reduced, self.carried_count + self.local_count * accelerator.num_processes

    def mean(self, accelerator: Accelerator) -> float | None:
        """The mean loss, or None before the first micro-batch."""
        total, count = self.total(accelerator)
        return total / count if count else None

    def reset(self) -> None:
        """Start over (the logging window)."""
        self.local_sum.zero_()
        self.local_count, self.carried_sum, self.carried_count = 0, 0.0, 0


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Train, evaluate every epoch, save; returns what ``all_results.json`` holds."""
    model_args, data_args, aug_args, args = parse_arguments(argv, TRAIN_DATACLASSES, description=__doc__)
    output_dir = Path(args.output_dir)
    # the Hub repository is checked (and created) now: a bad id or token must not wait for the end of training
    uses_hub = args.push_to_hub or args.push_dataset_to_hub or args.resume_from_checkpoint == "hub"
    hub = HubRun(args, output_dir, aug_args.augmentation) if uses_hub else None
    if args.resume_from_checkpoint == "hub":
        resume_from = hub.download_checkpoint()
    else:
        resume_from = find_checkpoint(args.resume_from_checkpoint, output_dir) if args.resume_from_checkpoint else None
    state = starting_state(resume_from)

    accelerator = Accelerator(
        mixed_precision=resolve_mixed_precision(args.mixed_precision),
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        log_with=make_trackers(args.report_to, output_dir / "logs", state["completed_steps"] if resume_from else None),
        project_config=ProjectConfiguration(project_dir=str(output_dir), logging_dir=str(output_dir / "logs")),
        dataloader_config=DataLoaderConfiguration(split_batches=True, use_seedable_sampler=True, data_seed=args.seed),
    )
    for name in ("train_batch_size", "eval_batch_size"):
        if getattr(args, name) % accelerator.num_processes:
            raise ValueError(
                f"{name}={getattr(args, name)} is the batch over all processes and must be divisible by "
                f"the number of processes ({accelerator.num_processes})"
            )
    claim_output_dir(output_dir, TRAIN_ENTRIES, overwrite=args.overwrite_output_dir, resume_from=resume_from)
    set_seed(args.seed)
    if accelerator.is_main_process:
        save_config(output_dir / "train_config.yaml", model_args, data_args, aug_args, args)

    with accelerator.local_main_process_first():  # one build per machine; the others read its cache
        raw = load_splits(data_args, [data_args.train_split, *data_args.eval_splits])
        eval_sets = {split: as_sentences(raw[split], data_args.max_eval_samples) for split in data_args.eval_splits}
        model, processor = load_referring_segmenter(
            model_args.model_name_or_path, model_type=model_args.model_type, trainable=model_args.trainable,
            revision=model_args.model_revision, image_size=model_args.image_size, text_length=model_args.text_length,
            seed=args.seed,
        )
    # outside main_process_first: NeMo's mining is collective, every process takes part at once
    train = build_train_dataset(
        raw[data_args.train_split], aug_args, args.seed, data_args.max_train_samples,
        input_size=int(processor.image_processor.size["height"]), main_process_first=accelerator.main_process_first,
    )

    if accelerator.num_processes > 1 and accelerator.device.type == "cuda":
        # batch statistics over the whole batch, as CRIS trains (sync_bn); models without batch norm are unchanged
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    optimizer = torch.optim.AdamW(parameter_groups(model, args))
    workers = data_args.dataloader_num_workers
    train_loader = DataLoader(
        train.dataset, batch_size=args.train_batch_size, shuffle=True, drop_last=True,
        collate_fn=RISCollator(processor), num_workers=workers,
        persistent_workers=workers > 0,  # NeMo's epoch is shared memory: kept workers follow set_epoch
    )
    if len(train_loader) == 0:
        raise ValueError(f"{len(train.dataset)} training samples make no full batch of {args.train_batch_size}")
    eval_loaders = {
        split: DataLoader(ds, batch_size=args.eval_batch_size, collate_fn=RISCollator(processor, with_targets=True),
                          num_workers=workers)  # once an epoch: not worth workers held between passes
        for split, ds in eval_sets.items()
    }
    updates_per_epoch = math.ceil(len(train_loader) / args.gradient_accumulation_steps)
    max_steps = args.max_train_steps or args.num_train_epochs * updates_per_epoch
    num_epochs = math.ceil(max_steps / updates_per_epoch)
    scheduler = build_scheduler(
        optimizer, args.lr_scheduler_type, updates_per_epoch=updates_per_epoch, max_steps=max_steps,
        num_warmup_steps=args.num_warmup_steps, milestones=args.lr_milestones, decay=args.lr_decay,
    )
    model, optimizer, train_loader, scheduler = accelerator.prepare(model, optimizer, train_loader, scheduler)
    eval_loaders = {split: accelerator.prepare(loader) for split, loader in eval_loaders.items()}

    completed_steps = int(state["completed_steps"])
    start_epoch, steps_into_epoch = divmod(completed_steps, updates_per_epoch)
    if resume_from is not None:
        accelerator.load_state(str(resume_from))
        accelerator.print(f"resumed from {resume_from} at step {completed_steps}: {max(max_steps - completed_steps, 0)} "
                          f"steps left, from batch {steps_into_epoch * args.gradient_accumulation_steps} "
                          f"of epoch {start_epoch + 1}")
    config = config_values(model_args, data_args, aug_args, args)
    accelerator.init_trackers("nemo_hf", config=flatten_scalars({k: str(v) if isinstance(v, list) else v
                                                                  for k, v in config.items()}))
    every = int(args.checkpointing_steps) if args.checkpointing_steps.isdigit() else None

    run_loss = RunningLoss(accelerator.device, state.get("loss_sum", 0.0), state.get("loss_count", 0))
    window_loss = RunningLoss(accelerator.device, state.get("window_sum", 0.0), state.get("window_count", 0))

    def save_model(folder: Path) -> None:
        """The model folder: weights and config, processor, resolved arguments."""
        accelerator.unwrap_model(model).save_pretrained(folder)
        processor.save_pretrained(folder)
        shutil.copy2(output_dir / "train_config.yaml", folder / "train_config.yaml")

    def checkpoint() -> None:
        (loss_sum, loss_count), (window_sum, window_count) = run_loss.total(accelerator), window_loss.total(accelerator)
        saved = save_checkpoint(
            accelerator, output_dir,
            {"run_id": state["run_id"], "run_started": state["run_started"], "completed_steps": completed_steps,
             "loss_sum": loss_sum, "loss_count": loss_count, "window_sum": window_sum, "window_count": window_count},
            args.checkpoints_total_limit,
        )
        if hub is not None:
            hub.after_checkpoint(completed_steps, saved, save_model)

    eval_results: dict[str, Any] = {}
    progress = tqdm(total=max_steps, initial=completed_steps, disable=not accelerator.is_local_main_process)
    started = time.time()
    for epoch in range(start_epoch, num_epochs):
        model.train()
        train.set_epoch(epoch)
        train_loader.set_epoch(epoch)
        skip = steps_into_epoch * args.gradient_accumulation_steps if epoch == start_epoch else 0
        batches = accelerator.skip_first_batches(train_loader, skip) if skip else train_loader
        for batch in batches:
            with accelerator.accumulate(model):
                logits = model(
                    pixel_values=batch["pixel_values"], input_ids=batch["input_ids"],
                    attention_mask=batch["attention_mask"],
                )
                loss = per_sample_bce(logits, batch["labels"]).mean()
                if args.loss == "bce+dice":
                    loss = loss + per_sample_dice(logits, batch["labels"]).mean()
                accelerator.backward(loss)
                if accelerator.sync_gradients and args.max_grad_norm > 0:
                    accelerator.clip_grad_norm_(model.parameters(), args.max_grad_norm)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad()
            run_loss.add(loss)
            window_loss.add(loss)
            if not accelerator.sync_gradients:
                continue
            completed_steps += 1
            progress.update(1)
            if completed_steps % args.logging_steps == 0:
                accelerator.log(
                    {"train/loss": window_loss.mean(accelerator), "train/learning_rate": scheduler.get_last_lr()[0],
                     "train/epoch": epoch},
                    step=completed_steps,
                )
                window_loss.reset()
            at_epoch_end = completed_steps % updates_per_epoch == 0 or completed_steps >= max_steps
            if every and completed_steps % every == 0 and not at_epoch_end:
                checkpoint()
            if completed_steps >= max_steps:
                break
        eval_results = {split: evaluate_referring(model, loader, accelerator) for split, loader in eval_loaders.items()}
        accelerator.log(flatten_scalars({"eval": eval_results}) | {"epoch": epoch + 1}, step=completed_steps)
        summary = ", ".join(f"{split} oIoU {r['overall_iou']:.4f} mIoU {r['mean_iou']:.4f}"
                            for split, r in eval_results.items())
        accelerator.print(f"epoch {epoch + 1}/{num_epochs} (step {completed_steps}): {summary}")
        if args.checkpointing_steps == "epoch" or (every and completed_steps % every == 0):
            checkpoint()
        if completed_steps >= max_steps:
            break
    progress.close()
    if not eval_results:  # resumed from the final checkpoint: nothing left to train
        eval_results = {split: evaluate_referring(model, loader, accelerator) for split, loader in eval_loaders.items()}

    results = {
        "train_loss": run_loss.mean(accelerator),
        "train_steps": completed_steps,
        "train_epochs": completed_steps / updates_per_epoch,
        "train_samples": len(train.dataset),  # referred objects; one sentence each per epoch
        "train_runtime_s": time.time() - started,
        "eval": eval_results,
        "model": model_args.model_name_or_path,
        "model_source": model_source(model_args.model_name_or_path, model_args.model_revision),
        # the CLIP that chose the negatives: none here when the rows came mined (their dataset card names it)
        "mining_clip": (model_source(aug_args.clip_model, aug_args.clip_revision)
                        if aug_args.augmentation == "nemo" and not train.premined else None),
        "architecture": type(accelerator.unwrap_model(model).model).__name__,
        "trainable": accelerator.unwrap_model(model).trainable,  # what the model card must say was trained
        "trained_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "total_parameters": sum(p.numel() for p in model.parameters()),
        "augmentation": aug_args.augmentation,
        "num_processes": accelerator.num_processes,
        "mixed_precision": accelerator.mixed_precision,
        "resumed_from": str(resume_from) if resume_from else None,
        "nemo_hf_version": nemo_hf.__version__,
    }
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        with writing_final(output_dir) as final:
            save_model(final)
            (final / "all_results.json").write_text(json.dumps(results, indent=2))
            # the card's snippets load the repository pushed to, or this folder
            model_id = hub.repo_id if hub is not None and args.push_to_hub else str(output_dir / FINAL_DIR)
            architecture = json.loads((final / "config.json").read_text())["architectures"][0]
            pushed_datasets = [hub.dataset_id] if hub is not None and hub.dataset_id else []
            (final / "README.md").write_text(render_model_card(results, config, model_id=model_id,
                                                               architecture=architecture, datasets=pushed_datasets))
    accelerator.print(f"saved the model, processor, model card, all_results.json and train_config.yaml to "
                      f"{output_dir / FINAL_DIR} (upload that folder); training state: {output_dir / 'checkpoints'}, "
                      f"logs: {output_dir / 'logs'}")
    if hub is not None and args.push_to_hub:
        commit = hub.after_training(output_dir / FINAL_DIR, results)
        accelerator.print(f"pushed {output_dir / FINAL_DIR} to {hub.repo_id} (commit {commit})")
    if hub is not None and args.push_dataset_to_hub:
        pushed = hub.push_training_set(train, {split: raw[split] for split in data_args.eval_splits},
                                       dataset_name=data_args.dataset_name, augmentation=aug_args, seed=args.seed)
        accelerator.print(f"pushed the mined training set to {hub.dataset_id}, config {pushed}")
    accelerator.end_training()
    # here, not after main returns: freeing main's DDP model and its gloo group can hang (process_exit)
    exit_now_if_distributed()
    return results


if __name__ == "__main__":
    main(sys.argv[1:])
