"""Fine-tune a referring segmenter with Accelerate: NeMo samples drawn on the fly, RIS metrics as it learns.

The loop that ``training/train.py``, the experiment behind ``nemo-hf demo`` and the
benchmarks all run, in the order of transformers' ``run_*_no_trainer.py`` scripts:
the run's folder and Hub repositories (:func:`start_run`), the data and the model
(:func:`prepare_data_and_model`), the optimizer and the loaders, the epochs of
:func:`training_step` with evaluations (every epoch, and every ``eval_steps``: the
learning curve) and checkpoints, then the model folder ``final/`` with its card, and the
pushes. :func:`main` parses the command line (:class:`~nemo_hf.trainer.args.TrainingConfig`);
:func:`train` takes a config, so a caller that already holds the training rows (the
experiment shares one mining between its arms) passes them as ``train_rows``.

What lands in ``output_dir`` (a run refuses a non-empty one unless it resumes there,
``overwrite_output_dir`` is given, or it holds only what a run that saved nothing left):
``final/`` (the model folder: weights, config, processor, model card ``README.md``,
``all_results.json``, ``train_config.yaml``; no training state),
``train_config.yaml`` (the resolved arguments), ``checkpoints/step_<N>/`` (full state for
``--resume_from_checkpoint latest``, which continues mid-epoch), and ``logs/``
(``metrics.jsonl`` always, TensorBoard events when installed).

An epoch visits every referred object of the training split once, with one of its
sentences (drawn per epoch). ``train_batch_size`` is the batch over all processes, split
between them, and the last incomplete batch of an epoch is dropped, so a config trains the
same model on 1 or N processes (up to floating-point summation order). Samples are drawn
from generators seeded by (seed, epoch, ref_id, sent_id), not by process, for the same reason.

    >>> config = TrainingConfig.parse(["--synthetic_images", "24", "--augmentation", "none"])
    >>> config.augmentation.augmentation, config.run.train_batch_size
    ('none', 32)
"""

from __future__ import annotations

import json
import math
import shutil
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import datasets
import torch
from accelerate import Accelerator
from accelerate.utils import DataLoaderConfiguration, ProjectConfiguration, set_seed
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from nemo_hf.data.configs import synthetic_description
from nemo_hf.hub.cards import model_source, render_model_card
from nemo_hf.hub.runs import HubRun
from nemo_hf.modeling.evaluation import evaluate_referring
from nemo_hf.modeling.inputs import RISCollator
from nemo_hf.modeling.loading import load_referring_segmenter
from nemo_hf.modeling.parts import PartwiseSegmenter
from nemo_hf.trainer.args import DataArguments, TrainArguments, TrainingConfig, resolve_mixed_precision
from nemo_hf.trainer.checkpoints import adopt_checkpoint, find_checkpoint, save_checkpoint, starting_state
from nemo_hf.trainer.data import TrainData, as_sentences, build_train_dataset, load_splits, synthetic_tree_root
from nemo_hf.trainer.output_dir import FINAL_DIR, TRAIN_ENTRIES, TRAIN_LEFTOVERS, claim_output_dir, writing_final
from nemo_hf.trainer.process_exit import exit_now_if_distributed
from nemo_hf.trainer.schedule import build_scheduler
from nemo_hf.trainer.tracking import flatten_scalars, make_trackers
from nemo_hf.version import __version__

__all__ = ["RunningLoss", "main", "parameter_groups", "train", "training_step"]


def main(argv: Sequence[str] | None = None, description: str | None = None) -> dict[str, Any]:
    """``training/train.py``: parse the command line (and ``--config``), train; what ``all_results.json`` holds."""
    results = train(TrainingConfig.parse(argv, description=description or __doc__))
    # here, not after main returns: freeing the DDP model and its gloo group can hang (process_exit)
    exit_now_if_distributed()
    return results


# ----------------------------------------------------------------------------- the parts of a step


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


def training_step(
    model: Any, batch: Mapping[str, torch.Tensor], optimizer: torch.optim.Optimizer, scheduler: Any,
    accelerator: Accelerator, max_grad_norm: float = 0.0,
) -> torch.Tensor:
    """One micro-batch: the model's own loss (``outputs.loss``), backward, clipping, and the optimizer step.

    Under gradient accumulation Accelerate's prepared optimizer and scheduler step only at
    the end of each accumulation; the caller wraps this in ``accelerator.accumulate(model)``.
    Returns the loss, detached.
    """
    outputs = model(pixel_values=batch["pixel_values"], input_ids=batch["input_ids"],
                    attention_mask=batch["attention_mask"], labels=batch["labels"])
    accelerator.backward(outputs.loss)
    if accelerator.sync_gradients and max_grad_norm > 0:
        accelerator.clip_grad_norm_(model.parameters(), max_grad_norm)
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad()
    return outputs.loss.detach()


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


# ----------------------------------------------------------------------------- a run, top to bottom


@dataclass
class _Run:
    """What the parts of one run share: its folder, Accelerate, the Hub, where it resumes from."""

    config: TrainingConfig
    output_dir: Path
    accelerator: Accelerator
    hub: HubRun | None
    resume_from: Path | None
    state: dict[str, Any]
    completed_steps: int = 0
    learning_curve: list[dict[str, Any]] = field(default_factory=list)


def start_run(config: TrainingConfig) -> _Run:
    """Check the Hub repositories, find the checkpoint to resume from, start Accelerate, claim the folder."""
    args = config.run
    output_dir = Path(args.output_dir)
    # the Hub repository is checked (and created) now: a bad id or token must not wait for the end of training
    uses_hub = args.push_to_hub or args.push_dataset_to_hub or args.resume_from_checkpoint == "hub"
    hub = HubRun(repo_id=args.hub_model_id, push=args.push_to_hub, strategy=args.hub_strategy, token=args.hub_token,
                 private=args.hub_private_repo, output_dir=output_dir, augmentation=config.augmentation.augmentation,
                 dataset_id=args.push_dataset_to_hub) if uses_hub else None
    if args.resume_from_checkpoint == "hub":
        resume_from = hub.download_checkpoint(output_dir / "checkpoints",
                                              adopt=lambda folder: adopt_checkpoint(folder, output_dir))
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
    claim_output_dir(output_dir, TRAIN_ENTRIES, overwrite=args.overwrite_output_dir, resume_from=resume_from,
                     leftovers=TRAIN_LEFTOVERS)
    set_seed(args.seed)
    if accelerator.is_main_process:
        config.save(output_dir / "train_config.yaml")
    return _Run(config, output_dir, accelerator, hub, resume_from, state, int(state["completed_steps"]))


def prepare_data_and_model(
    run: _Run, train_rows: datasets.Dataset | None = None, eval_rows: Mapping[str, datasets.Dataset] | None = None,
) -> tuple[dict[str, datasets.Dataset], dict[str, datasets.Dataset], PartwiseSegmenter, Any, TrainData]:
    """The splits (or the caller's rows), the per-sentence evaluation sets, the model and processor, the training set."""
    model_args, data_args, config = run.config.model, run.config.data, run.config
    wanted = [split for split in [data_args.train_split, *data_args.eval_splits]
              if not (split == data_args.train_split and train_rows is not None) and split not in (eval_rows or {})]
    with run.accelerator.local_main_process_first():  # one build per machine; the others read its cache
        raw = load_splits(data_args, wanted) if wanted else {}
        if train_rows is not None:
            raw[data_args.train_split] = train_rows
        raw.update(eval_rows or {})
        eval_sets = {split: as_sentences(raw[split], data_args.max_eval_samples) for split in data_args.eval_splits}
        model, processor = load_referring_segmenter(
            model_args.model_name_or_path, model_type=model_args.model_type, trainable=model_args.trainable,
            loss=model_args.loss, revision=model_args.model_revision, image_size=model_args.image_size,
            text_length=model_args.text_length, seed=config.run.seed,
        )
    # outside main_process_first: NeMo's mining is collective, every process takes part at once
    train = build_train_dataset(
        raw[data_args.train_split], config.augmentation.augmentation, config.nemo,
        clip_model=config.augmentation.clip_model, limit=data_args.max_train_samples,
        input_size=int(processor.image_processor.size["height"]), main_process_first=run.accelerator.main_process_first,
    )
    return raw, eval_sets, model, processor, train


def train(
    config: TrainingConfig, *, train_rows: datasets.Dataset | None = None,
    eval_rows: Mapping[str, datasets.Dataset] | None = None,
) -> dict[str, Any]:
    """Train, evaluate as it learns, save ``final/`` and push; returns what ``all_results.json`` holds.

    ``train_rows`` replaces the training split of ``config.data`` (e.g. rows that already
    carry NeMo's negatives, mined once for several runs), ``eval_rows`` any evaluation split.
    """
    run = start_run(config)
    accelerator, args, data_args = run.accelerator, config.run, config.data
    raw, eval_sets, model, processor, train_data = prepare_data_and_model(run, train_rows, eval_rows)

    if accelerator.num_processes > 1 and accelerator.device.type == "cuda":
        # batch statistics over the whole batch, as CRIS trains (sync_bn); models without batch norm are unchanged
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    optimizer = torch.optim.AdamW(parameter_groups(model, args))
    workers = data_args.dataloader_num_workers
    train_loader = DataLoader(
        train_data.dataset, batch_size=args.train_batch_size, shuffle=True, drop_last=True,
        collate_fn=RISCollator(processor), num_workers=workers,
        persistent_workers=workers > 0,  # NeMo's epoch is shared memory: kept workers follow set_epoch
    )
    if len(train_loader) == 0:
        raise ValueError(f"{len(train_data.dataset)} training samples make no full batch of {args.train_batch_size}")
    eval_loaders = {
        split: DataLoader(ds, batch_size=args.eval_batch_size, collate_fn=RISCollator(processor, with_targets=True),
                          num_workers=workers)  # once an evaluation: not worth workers held between passes
        for split, ds in eval_sets.items()
    }
    updates_per_epoch = math.ceil(len(train_loader) / args.gradient_accumulation_steps)
    max_steps = args.max_train_steps or args.num_train_epochs * updates_per_epoch
    scheduler = build_scheduler(
        optimizer, args.lr_scheduler_type, updates_per_epoch=updates_per_epoch, max_steps=max_steps,
        num_warmup_steps=args.num_warmup_steps, milestones=args.lr_milestones, decay=args.lr_decay,
    )
    model, optimizer, train_loader, scheduler = accelerator.prepare(model, optimizer, train_loader, scheduler)
    eval_loaders = {split: accelerator.prepare(loader) for split, loader in eval_loaders.items()}
    if run.resume_from is not None:
        accelerator.load_state(str(run.resume_from))
        start_epoch, steps_into_epoch = divmod(run.completed_steps, updates_per_epoch)
        accelerator.print(f"resumed from {run.resume_from} at step {run.completed_steps}: "
                          f"{max(max_steps - run.completed_steps, 0)} steps left, from batch "
                          f"{steps_into_epoch * args.gradient_accumulation_steps} of epoch {start_epoch + 1}")
    accelerator.init_trackers("nemo_hf", config=flatten_scalars({k: str(v) if isinstance(v, list) else v
                                                                  for k, v in config.to_dict().items()}))
    started = time.time()
    eval_results, run_loss = _train_epochs(run, model, processor, optimizer, scheduler, train_loader, train_data,
                                           eval_loaders, updates_per_epoch, max_steps)
    if not eval_results:  # resumed from the final checkpoint: nothing left to train
        eval_results = _evaluate(model, eval_loaders, accelerator)
    results = _results(run, model, train_data, eval_results, run_loss, updates_per_epoch, time.time() - started)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        _save_final(run, model, processor, results)
    accelerator.print(f"saved the model, processor, model card, all_results.json and train_config.yaml to "
                      f"{run.output_dir / FINAL_DIR} (upload that folder); training state: "
                      f"{run.output_dir / 'checkpoints'}, logs: {run.output_dir / 'logs'}")
    _push_at_end(run, raw, train_data, results)
    accelerator.end_training()
    return results


# ----------------------------------------------------------------------------- the loop and what it calls


def _train_epochs(
    run: _Run, model: Any, processor: Any, optimizer: Any, scheduler: Any, train_loader: DataLoader,
    train_data: TrainData, eval_loaders: Mapping[str, DataLoader], updates_per_epoch: int, max_steps: int,
) -> tuple[dict[str, Any], RunningLoss]:
    """The epochs: training steps, logging, evaluations and checkpoints; the last evaluation and the run's loss."""
    accelerator, args = run.accelerator, run.config.run
    num_epochs = math.ceil(max_steps / updates_per_epoch)
    start_epoch, steps_into_epoch = divmod(run.completed_steps, updates_per_epoch)
    every = int(args.checkpointing_steps) if args.checkpointing_steps.isdigit() else None
    by_epoch = args.eval_strategy == "epoch"  # else every eval_steps, and once at the end
    run_loss = RunningLoss(accelerator.device, run.state.get("loss_sum", 0.0), run.state.get("loss_count", 0))
    window_loss = RunningLoss(accelerator.device, run.state.get("window_sum", 0.0), run.state.get("window_count", 0))

    def checkpoint() -> None:
        (loss_sum, loss_count), (window_sum, window_count) = run_loss.total(accelerator), window_loss.total(accelerator)
        saved = save_checkpoint(
            accelerator, run.output_dir,
            {"run_id": run.state["run_id"], "run_started": run.state["run_started"],
             "completed_steps": run.completed_steps, "loss_sum": loss_sum, "loss_count": loss_count,
             "window_sum": window_sum, "window_count": window_count},
            args.checkpoints_total_limit,
        )
        if run.hub is not None:
            run.hub.after_checkpoint(run.completed_steps, saved,
                                     lambda folder: _save_model(run, model, processor, folder))

    eval_results: dict[str, Any] = {}
    progress = tqdm(total=max_steps, initial=run.completed_steps, disable=not accelerator.is_local_main_process)
    for epoch in range(start_epoch, num_epochs):
        model.train()
        train_data.set_epoch(epoch)
        train_loader.set_epoch(epoch)
        # a resumed epoch skips the micro-batches its completed optimizer steps consumed
        skip = steps_into_epoch * args.gradient_accumulation_steps if epoch == start_epoch else 0
        batches = accelerator.skip_first_batches(train_loader, skip) if skip else train_loader
        for batch in batches:
            with accelerator.accumulate(model):
                loss = training_step(model, batch, optimizer, scheduler, accelerator, args.max_grad_norm)
            run_loss.add(loss)
            window_loss.add(loss)
            if not accelerator.sync_gradients:
                continue
            run.completed_steps += 1
            progress.update(1)
            if run.completed_steps % args.logging_steps == 0:
                accelerator.log({"train/loss": window_loss.mean(accelerator),
                                 "train/learning_rate": scheduler.get_last_lr()[0], "train/epoch": epoch},
                                step=run.completed_steps)
                window_loss.reset()
            at_epoch_end = run.completed_steps % updates_per_epoch == 0 or run.completed_steps >= max_steps
            evaluated_below = at_epoch_end if by_epoch else run.completed_steps >= max_steps
            if args.eval_steps and run.completed_steps % args.eval_steps == 0 and not evaluated_below:
                _evaluate_and_log(run, model, eval_loaders, run.completed_steps / updates_per_epoch)
                model.train()
            if every and run.completed_steps % every == 0 and not at_epoch_end:
                checkpoint()
            if run.completed_steps >= max_steps:
                break
        if by_epoch or run.completed_steps >= max_steps:
            eval_results = _evaluate_and_log(run, model, eval_loaders, run.completed_steps / updates_per_epoch)
            accelerator.print(f"epoch {epoch + 1}/{num_epochs} (step {run.completed_steps}): " + ", ".join(
                f"{split} oIoU {r['overall_iou']:.4f} mIoU {r['mean_iou']:.4f}" for split, r in eval_results.items()))
        if args.checkpointing_steps == "epoch" or (every and run.completed_steps % every == 0):
            checkpoint()
        if run.completed_steps >= max_steps:
            break
    progress.close()
    return eval_results, run_loss


def _evaluate(model: Any, eval_loaders: Mapping[str, DataLoader], accelerator: Accelerator) -> dict[str, Any]:
    return {split: evaluate_referring(model, loader, accelerator) for split, loader in eval_loaders.items()}


def _evaluate_and_log(run: _Run, model: Any, eval_loaders: Mapping[str, DataLoader], epoch: float) -> dict[str, Any]:
    """Evaluate every split, log it and add it to the learning curve (collective)."""
    results = _evaluate(model, eval_loaders, run.accelerator)
    run.accelerator.log(flatten_scalars({"eval": results}) | {"epoch": epoch}, step=run.completed_steps)
    run.learning_curve.append({"step": run.completed_steps, "epoch": round(epoch, 4), "eval": results})
    return results


def _results(
    run: _Run, model: Any, train_data: TrainData, eval_results: dict[str, Any], run_loss: RunningLoss,
    updates_per_epoch: int, seconds: float,
) -> dict[str, Any]:
    """What ``all_results.json`` holds (collective: the loss is reduced over processes)."""
    config, accelerator = run.config, run.accelerator
    unwrapped = accelerator.unwrap_model(model)
    augmentation = config.augmentation
    return {
        "train_loss": run_loss.mean(accelerator),
        "train_steps": run.completed_steps,
        "train_epochs": run.completed_steps / updates_per_epoch,
        "train_samples": len(train_data.dataset),  # referred objects; one sentence each per epoch
        "train_runtime_s": seconds,
        "eval": eval_results,
        "learning_curve": run.learning_curve,
        "model": config.model.model_name_or_path,
        "model_source": model_source(config.model.model_name_or_path, config.model.model_revision),
        # the CLIP that chose the negatives: none here when the rows came mined (their source names it)
        "mining_clip": (model_source(augmentation.clip_model, config.nemo.clip_revision)
                        if augmentation.augmentation == "nemo" and not train_data.premined else None),
        "architecture": type(unwrapped.model).__name__,
        "trainable": unwrapped.trainable,  # what the model card must say was trained
        "loss": unwrapped.segmentation_loss,
        "trained_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "total_parameters": sum(p.numel() for p in model.parameters()),
        "augmentation": augmentation.augmentation,
        "num_processes": accelerator.num_processes,
        "mixed_precision": accelerator.mixed_precision,
        "resumed_from": str(run.resume_from) if run.resume_from else None,
        "nemo_hf_version": __version__,
    }


def _save_model(run: _Run, model: Any, processor: Any, folder: Path) -> None:
    """The model folder: weights and config, processor, resolved arguments."""
    run.accelerator.unwrap_model(model).save_pretrained(folder)
    processor.save_pretrained(folder)
    shutil.copy2(run.output_dir / "train_config.yaml", folder / "train_config.yaml")


def _save_final(run: _Run, model: Any, processor: Any, results: dict[str, Any]) -> None:
    """``final/``: the model folder, ``all_results.json`` and the model card (main process)."""
    with writing_final(run.output_dir) as final:
        _save_model(run, model, processor, final)
        (final / "all_results.json").write_text(json.dumps(results, indent=2))
        # the card's snippets load the repository pushed to, or this folder
        pushing = run.hub is not None and run.config.run.push_to_hub
        model_id = run.hub.repo_id if pushing else str(run.output_dir / FINAL_DIR)
        architecture = json.loads((final / "config.json").read_text())["architectures"][0]
        pushed_datasets = [run.hub.dataset_id] if run.hub is not None and run.hub.dataset_id else []
        (final / "README.md").write_text(render_model_card(results, run.config.to_dict(), model_id=model_id,
                                                           architecture=architecture, datasets=pushed_datasets))


def _synthetic_source(data: DataArguments) -> str | None:
    """The description of the synthetic tree the run's data comes from (generated, or named by data_dir), or None."""
    if data.synthetic_images:
        return synthetic_description(synthetic_tree_root(data), data.dataset_name)
    return synthetic_description(data.data_dir, data.dataset_name) if data.data_dir else None


def _push_at_end(run: _Run, raw: Mapping[str, datasets.Dataset], train_data: TrainData, results: dict) -> None:
    """``--push_to_hub``: ``final/``; ``--push_dataset_to_hub``: the mined training set (main process)."""
    hub, args, config = run.hub, run.config.run, run.config
    if hub is not None and args.push_to_hub:
        commit = hub.after_training(run.output_dir / FINAL_DIR, results)
        run.accelerator.print(f"pushed {run.output_dir / FINAL_DIR} to {hub.repo_id} (commit {commit})")
    if hub is not None and args.push_dataset_to_hub:
        if train_data.mined is None:
            raise ValueError("no mined training set to push: the run did not use NeMo")
        train_data.set_epoch(0)
        pushed = hub.push_training_set(
            train_data.mined, {split: raw[split] for split in config.data.eval_splits}, samples=train_data.dataset,
            dataset_name=config.data.dataset_name, settings=config.nemo.to_dict(),
            clip_model=None if train_data.premined else config.augmentation.clip_model,
            clip_revision=config.nemo.clip_revision, report=train_data.report, seed=config.run.seed,
            synthetic=_synthetic_source(config.data),
        )
        run.accelerator.print(f"pushed the mined training set to {hub.dataset_id}, config {pushed}")
