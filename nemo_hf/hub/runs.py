"""A training run on the Hub: its repositories, checked before training, and what is pushed when.

``training/train.py --push_to_hub`` pushes the model folder to ``hub_model_id`` with the
transformers names and meanings of ``hub_strategy``:

- ``"end"`` — once, when training ends;
- ``"every_save"`` (the default) — also the current model at every checkpoint;
- ``"checkpoint"`` — as ``every_save``, plus the training state of that checkpoint
  (optimizer, scheduler, sampler, RNG states) under ``last-checkpoint/``, so that
  ``--resume_from_checkpoint hub`` continues the run on another machine.

``--push_dataset_to_hub`` pushes the NeMo-mined training set (and the evaluation splits)
as a dataset config when training ends (:meth:`HubRun.push_training_set`).

The repositories are checked before any data is built: the ids' form, a token that the Hub
accepts, write access to the namespace; then they are created (``exist_ok``). Only the main
process talks to the Hub; the others learn its outcome, so a bad id stops every process
with the same message.

    >>> from accelerate import PartialState
    >>> _ = PartialState(cpu=True)
    >>> HubRun(repo_id="me/model", push=False, strategy="end", token=None, private=False,
    ...        output_dir=Path("out"), augmentation="none").repo_id
    'me/model'
"""

from __future__ import annotations

import builtins
import json
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import datasets
from accelerate.utils import broadcast_object_list

from nemo_hf.hub.cards import mining_summary, model_source
from nemo_hf.hub.dataset_repos import push_mined_dataset
from nemo_hf.hub.model_repos import (
    HubPushError,
    checked_repo_id,
    create_checked_repo,
    download_hub_checkpoint,
    endpoint,
    push_model_folder,
)
from nemo_hf.mining.device import process_state
from nemo_hf.viz import save_mosaic_grid

__all__ = ["HubRun"]


def _on_main_process(work: Callable[[], Any]) -> Any:
    """``work()`` on the main process; its result, or its error, reaches every process.

    Whatever fails must be heard everywhere, or the other processes wait forever on the broadcast.
    """
    outcome: list[object] = [None]
    failure: Exception | None = None
    # a run checks its repositories before it builds its Accelerator, so this may be the process's first
    # state, which every later one shares: it must see CPU processes (ACCELERATE_USE_CPU) as the run they are,
    # or each one takes itself for the main process of a run of one, and pushes
    if process_state().is_main_process:
        try:
            outcome = [("ok", work())]
        except Exception as error:
            failure, outcome = error, [(type(error).__name__, str(error))]
    broadcast_object_list(outcome)
    if failure is not None:
        raise failure
    kind, value = outcome[0]
    if kind != "ok":  # the same message, as a built-in exception of the same name where there is one
        error_type = getattr(builtins, kind, RuntimeError)
        raise (error_type if isinstance(error_type, type) and issubclass(error_type, Exception) else RuntimeError)(value)
    return value


class HubRun:
    """The Hub side of one training run (see the module docstring).

    Built on every process before training (collective): the main process checks the
    repositories and, when pushing, creates them; every process then raises the same error,
    or holds the same :attr:`repo_id` and :attr:`dataset_id`. The push methods act on the
    main process only.

    Args:
        repo_id: ``hub_model_id`` (a bare name goes to the token owner's namespace; None:
            the output folder's name there).
        push: whether the model is pushed (``--push_to_hub``); else the repository is only read
            (``--resume_from_checkpoint hub``).
        strategy: ``"end"``, ``"every_save"`` or ``"checkpoint"``.
        token, private: the token (None: ``HF_TOKEN`` or the login cache) and whether new
            repositories are private.
        output_dir: the run's folder.
        augmentation: the run's augmentation (a mined training set exists only for ``"nemo"``).
        dataset_id: ``--push_dataset_to_hub``: the dataset repository for the mined training set.
    """

    def __init__(
        self, *, repo_id: str | None, push: bool, strategy: str, token: str | None, private: bool, output_dir: Path,
        augmentation: str, dataset_id: str | None = None,
    ) -> None:
        self.token = token
        self.strategy = strategy if push else None
        self.output_dir = output_dir
        self.private = private

        def check() -> tuple[str, str | None]:
            if dataset_id and augmentation != "nemo":
                raise ValueError(f"--push_dataset_to_hub pushes the NeMo-mined training set, but the augmentation "
                                 f"is {augmentation!r}: add --augmentation nemo, or leave the flag out")
            checked = checked_repo_id(repo_id, token, default_name=output_dir.name, write=push)
            if push:
                create_checked_repo(checked, token, private=private)
            checked_dataset = None
            if dataset_id:
                checked_dataset = checked_repo_id(dataset_id, token, default_name="", write=True)
                create_checked_repo(checked_dataset, token, private=private, repo_type="dataset")
            return checked, checked_dataset

        self.repo_id, self.dataset_id = _on_main_process(check)

    def download_checkpoint(self, into: Path, adopt: Callable[[Path], Path]) -> Path:
        """``--resume_from_checkpoint hub``: the run's ``last-checkpoint/`` downloaded into ``into``, then ``adopt``-ed.

        ``adopt`` moves the downloaded folder where the run keeps its checkpoints and returns
        the new path, which every process gets (collective).
        """
        return Path(_on_main_process(lambda: str(adopt(download_hub_checkpoint(self.repo_id, into, token=self.token)))))

    def after_checkpoint(self, step: int, checkpoint: Path, write_model: Callable[[Path], None]) -> None:
        """``every_save``: push the current model; ``checkpoint``: with the training state. Main process only.

        A failed push here is reported and training goes on: the next save pushes the whole
        model again.
        """
        if self.strategy not in ("every_save", "checkpoint") or not process_state().is_main_process:
            return
        with tempfile.TemporaryDirectory(prefix="nemo_hf-push-") as folder:
            write_model(Path(folder))
            try:
                push_model_folder(folder, self.repo_id, token=self.token, message=f"Training in progress, step {step}",
                                  checkpoint=checkpoint if self.strategy == "checkpoint" else None)
            except HubPushError as error:
                # its retry command names this temporary folder, gone in a moment: the next save is the retry
                print(f"warning: the push of step {step} to {self.repo_id} failed ({error.__cause__}); nothing of it "
                      "landed, and training goes on: the next checkpoint pushes the whole model again")

    def after_training(self, final: Path, results: Mapping[str, Any]) -> str | None:
        """Push ``final/`` (every strategy); the commit id. Main process only (None elsewhere)."""
        if self.strategy is None or not process_state().is_main_process:
            return None
        scores = ", ".join(f"{split} oIoU {r['overall_iou']:.4f}" for split, r in results.get("eval", {}).items())
        message = f"End of training: step {results['train_steps']}" + (f" ({scores})" if scores else "")
        commit = push_model_folder(final, self.repo_id, token=self.token, message=message)
        (self.output_dir / "logs").mkdir(exist_ok=True)
        record = {"repo_id": self.repo_id, "commit": commit, "endpoint": endpoint()}
        (self.output_dir / "logs" / "hub_push.json").write_text(json.dumps(record, indent=2))
        return commit

    def push_training_set(
        self, mined: datasets.Dataset, eval_splits: Mapping[str, datasets.Dataset], *, samples: datasets.Dataset,
        dataset_name: str, settings: Mapping[str, Any], clip_model: str | None, clip_revision: str | None,
        report: Any, seed: int, synthetic: str | None = None,
    ) -> str | None:
        """``--push_dataset_to_hub``: the mined training rows and the evaluation splits, as one config; its name.

        ``samples`` are drawn training samples for the card's picture; ``clip_model`` is the
        CLIP that mined the rows (None: they came mined); ``settings`` NeMo's; ``synthetic`` the
        description of a synthetic source tree (its card then says it is synthetic). Main process
        only (None elsewhere), after training: no other process waits on an upload that may
        take longer than a collective's timeout.
        """
        if self.dataset_id is None or not process_state().is_main_process:
            return None
        config_name = f"{dataset_name}-nemo"
        splits = {"train": mined, **{name: _with_empty_negatives(part, mined) for name, part in eval_splits.items()}}
        clip = None if clip_model is None else model_source(clip_model, clip_revision)
        with tempfile.TemporaryDirectory(prefix="nemo_hf-samples-") as folder:
            picture = save_mosaic_grid(samples.select(range(min(8, len(samples)))), Path(folder) / "samples.png")
            summary = mining_summary(settings=settings, clip=clip, seed=seed, report=report,
                                     picture=f"{config_name}/samples.png")
            push_mined_dataset(datasets.DatasetDict(splits), self.dataset_id, config_name,
                               source_config=dataset_name, mining=summary, picture=picture, private=self.private,
                               token=self.token, synthetic=synthetic)
        return config_name


def _with_empty_negatives(split: datasets.Dataset, mined: datasets.Dataset) -> datasets.Dataset:
    """An evaluation split with the mined split's negative columns, empty: one schema for the whole config."""
    for name in (c for c in mined.column_names if c not in split.column_names):
        split = split.add_column(name, [None] * len(split), feature=mined.features[name])
    return split
