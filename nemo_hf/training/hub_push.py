"""A training run on the Hub: its model repository, checked before training, and what is pushed when.

``training/train.py --push_to_hub`` pushes the model folder (``final/``: weights, config,
processor, model card, ``all_results.json``, ``train_config.yaml``) to ``hub_model_id``,
with the transformers names and meanings of ``hub_strategy``:

- ``"end"`` — once, when training ends;
- ``"every_save"`` (the default) — also the current model at every checkpoint;
- ``"checkpoint"`` — as ``every_save``, plus the training state of that checkpoint
  (optimizer, scheduler, sampler, RNG states) under ``last-checkpoint/``, so that
  ``--resume_from_checkpoint hub`` continues the run on another machine.

Everything else never leaves the machine: optimizer and RNG files are refused outside
``last-checkpoint/`` (:func:`push_operations`). Each push is **one commit**, all or nothing:
a push that fails midway (a dropped connection, a refused file) raises
:class:`HubPushError` and leaves the repository's branch as it was.

``--push_dataset_to_hub`` pushes the NeMo-mined training set (and the evaluation splits)
as a dataset config when training ends (:meth:`HubRun.push_training_set`).

The repositories are checked before any data is built (:class:`HubRun`): the ids' form, a
token that the Hub accepts, write access to the namespace; then they are created
(``exist_ok``). Only the main process talks to the Hub; the others learn its outcome, so a
bad id stops every process with the same message.

    >>> import tempfile
    >>> folder, state = Path(tempfile.mkdtemp()), Path(tempfile.mkdtemp())
    >>> for name in ("model.safetensors", "config.json"):
    ...     _ = (folder / name).write_text("{}")
    >>> for name in ("optimizer.bin", "trainer_state.json"):
    ...     _ = (state / name).write_text("{}")
    >>> [op.path_in_repo for op in push_operations(folder, state, stale=["last-checkpoint/old.bin"])]
    ['config.json', 'model.safetensors', 'last-checkpoint/optimizer.bin', 'last-checkpoint/trainer_state.json', 'last-checkpoint/old.bin']
    >>> _ = (folder / "optimizer.bin").write_text("{}")
    >>> push_operations(folder)
    Traceback (most recent call last):
    ...
    ValueError: ... holds training state (['optimizer.bin']): a model push carries it only under last-checkpoint/
"""

from __future__ import annotations

import dataclasses
import fnmatch
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import datasets
from accelerate import PartialState
from accelerate.utils import broadcast_object_list
from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi, constants, snapshot_download
from huggingface_hub.errors import (
    HFValidationError,
    HfHubHTTPError,
    LocalTokenNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from huggingface_hub.utils import validate_repo_id

from ..hub import mining_summary, model_source, push_mined_dataset
from ..viz import save_mosaic_grid
from .args import AugmentationArguments, TrainArguments
from .checkpoints import TRAINER_STATE, read_trainer_state
from .data import TrainData

__all__ = [
    "HUB_CHECKPOINT_DIR",
    "HubPushError",
    "HubRun",
    "checked_repo_id",
    "download_hub_checkpoint",
    "push_model_folder",
    "push_operations",
]

HUB_CHECKPOINT_DIR = "last-checkpoint"
# what accelerator.save_state and the checkpoints add to a model: never at a model repo's top level
_TRAINING_STATE = ("optimizer*", "scheduler*", "sampler*", "random_states*", "custom_checkpoint*", "*.pkl",
                   "pytorch_model_fsdp*", TRAINER_STATE)


class HubPushError(RuntimeError):
    """A push that did not land; the repository is as it was before it."""


def _where() -> str:
    return constants.ENDPOINT


def checked_repo_id(hub_model_id: str | None, token: str | None, *, default_name: str, write: bool) -> str:
    """The full ``namespace/name`` to push to, once the id, the token and (``write``) the rights are checked.

    A bare name (or none: ``default_name``) goes to the token owner's namespace, as in
    transformers. Raises ``ValueError`` saying what to change.
    """
    name = hub_model_id or default_name
    try:
        validate_repo_id(name)
    except HFValidationError as error:
        raise ValueError(f"--hub_model_id {name!r} is not a Hub repository id ('namespace/name'): {error}") from None
    if not write and "/" in name:
        return name  # reading needs no token for a public repository
    try:
        me = HfApi(token=token).whoami()
    except LocalTokenNotFoundError:
        raise ValueError(
            f"pushing to the Hub ({_where()}) needs a token with write access: run `hf auth login`, set HF_TOKEN, "
            "or pass --hub_token"
        ) from None
    except HfHubHTTPError as error:
        if error.response is not None and error.response.status_code == 401:
            raise ValueError(f"the Hub at {_where()} refused the token (401): {error}") from None
        raise
    user = me["name"]
    repo_id = name if "/" in name else f"{user}/{name}"
    if not write:
        return repo_id
    role = me.get("auth", {}).get("accessToken", {}).get("role")
    if role == "read":
        raise ValueError(f"the token of {user!r} is read-only: pushing to {repo_id} needs a token with write access")
    namespace = repo_id.split("/")[0]
    writable = [user, *(org.get("name") for org in me.get("orgs", []))]
    if namespace not in writable:
        raise ValueError(
            f"{user!r} may not push to {repo_id}: the token writes to the namespace(s) {writable}, not {namespace!r}; "
            "choose --hub_model_id under one of them"
        )
    return repo_id


def create_checked_repo(repo_id: str, token: str | None, *, private: bool, repo_type: str = "model") -> None:
    """Create the repository (``exist_ok``); refuse a public one when a private one was asked for."""
    api = HfApi(token=token)
    api.create_repo(repo_id, private=private, exist_ok=True, repo_type=repo_type)
    if private and not api.repo_info(repo_id, repo_type=repo_type).private:
        raise ValueError(
            f"{repo_id} already exists and is public, but --hub_private_repo was given: make it private on the Hub "
            "or push elsewhere"
        )


def push_operations(
    folder: Path, checkpoint: Path | None = None, stale: Sequence[str] = ()
) -> list[CommitOperationAdd | CommitOperationDelete]:
    """One commit's operations: ``folder``'s files at the top, ``checkpoint``'s under ``last-checkpoint/``.

    ``stale`` are repository paths to delete (the previous ``last-checkpoint/`` files that
    this checkpoint does not hold). Raises ``ValueError`` if ``folder`` holds training state.
    """
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    state = [p.name for p in files if any(fnmatch.fnmatch(p.name, pattern) for pattern in _TRAINING_STATE)]
    if state:
        raise ValueError(f"{folder} holds training state ({state}): a model push carries it only under "
                         f"{HUB_CHECKPOINT_DIR}/")
    operations: list[CommitOperationAdd | CommitOperationDelete] = [
        CommitOperationAdd(path_in_repo=p.relative_to(folder).as_posix(), path_or_fileobj=str(p)) for p in files
    ]
    if checkpoint is not None:
        operations += [
            CommitOperationAdd(path_in_repo=f"{HUB_CHECKPOINT_DIR}/{p.relative_to(checkpoint).as_posix()}",
                               path_or_fileobj=str(p))
            for p in sorted(checkpoint.rglob("*")) if p.is_file()
        ]
    kept = {op.path_in_repo for op in operations}
    operations += [CommitOperationDelete(path_in_repo=path) for path in stale if path not in kept]
    return operations


def push_model_folder(
    folder: str | os.PathLike[str], repo_id: str, *, token: str | None = None, message: str,
    checkpoint: str | os.PathLike[str] | None = None,
) -> str:
    """Push ``folder`` (and ``checkpoint`` under ``last-checkpoint/``) to ``repo_id`` as one commit; its id.

    Unchanged files are not uploaded again, and a push that changes nothing makes no commit.
    Raises :class:`HubPushError` when the push fails; the branch is then unchanged.
    """
    api = HfApi(token=token)
    checkpoint = Path(checkpoint) if checkpoint is not None else None
    push_operations(Path(folder), checkpoint)  # a folder with training state is refused before anything is sent
    try:
        stale: list[str] = []
        if checkpoint is not None:
            stale = [path for path in api.list_repo_files(repo_id) if path.startswith(f"{HUB_CHECKPOINT_DIR}/")]
        return api.create_commit(repo_id, push_operations(Path(folder), checkpoint, stale), commit_message=message).oid
    # HTTP errors, and a dropped connection, which is the client's HTTP library's own exception
    except Exception as error:
        raise HubPushError(
            f"pushing {folder} to {repo_id} on {_where()} failed: {error}. Nothing of it landed (a commit is all or "
            "nothing), so the repository is as it was; push again once the cause is fixed, e.g. "
            f"`hf upload {repo_id} {folder}`"
        ) from error


def download_hub_checkpoint(
    repo_id: str, output_dir: Path, *, token: str | None = None, revision: str | None = None
) -> Path:
    """Download ``last-checkpoint/`` of ``repo_id`` into ``output_dir/checkpoints/step_<N>``; that folder.

    Call it on the main process only (:class:`HubRun` does). A checkpoint of the same step
    already there is replaced: the Hub's is the one asked for.
    """
    api = HfApi(token=token)
    try:
        files = api.list_repo_files(repo_id, revision=revision)
    except (RepositoryNotFoundError, RevisionNotFoundError) as error:
        raise FileNotFoundError(
            f"--resume_from_checkpoint hub: {repo_id} (revision {revision or 'main'}) is not on {_where()}, or is "
            "private and the token is not its owner's"
        ) from error
    if f"{HUB_CHECKPOINT_DIR}/{TRAINER_STATE}" not in files:
        raise FileNotFoundError(
            f"--resume_from_checkpoint hub: {repo_id} holds no {HUB_CHECKPOINT_DIR}/{TRAINER_STATE}; only runs "
            "pushed with --hub_strategy checkpoint leave one, from their first checkpoint on"
        )
    checkpoints = output_dir / "checkpoints"
    checkpoints.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".hub-download-", dir=checkpoints))
    try:
        snapshot_download(repo_id, revision=revision, token=token, allow_patterns=[f"{HUB_CHECKPOINT_DIR}/*"],
                          local_dir=staging)
        downloaded = staging / HUB_CHECKPOINT_DIR
        target = checkpoints / f"step_{int(read_trainer_state(downloaded)['completed_steps'])}"
        if target.exists():
            shutil.rmtree(target)
        os.replace(downloaded, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


class HubRun:
    """The Hub side of one training run: the checked repository, and the pushes ``hub_strategy`` asks for.

    Built on every process before training (collective): the main process checks the
    repository (:func:`checked_repo_id`) and, when pushing, creates it; every process then
    raises the same error, or holds the same :attr:`repo_id`. The push methods act on the
    main process only.
    """

    def __init__(self, args: TrainArguments, output_dir: Path, augmentation: str) -> None:
        self.token = args.hub_token
        self.strategy = args.hub_strategy if args.push_to_hub else None
        self.output_dir = output_dir
        self.private = args.hub_private_repo
        state = PartialState()
        outcome: list[object] = [None]
        failure: Exception | None = None
        if state.is_main_process:
            try:
                if args.push_dataset_to_hub and augmentation != "nemo":
                    raise ValueError(f"--push_dataset_to_hub pushes the NeMo-mined training set, but the augmentation "
                                     f"is {augmentation!r}: add --augmentation nemo, or leave the flag out")
                repo_id = checked_repo_id(args.hub_model_id, self.token, default_name=output_dir.name,
                                          write=args.push_to_hub)
                if args.push_to_hub:
                    create_checked_repo(repo_id, self.token, private=self.private)
                dataset_id = None
                if args.push_dataset_to_hub:
                    dataset_id = checked_repo_id(args.push_dataset_to_hub, self.token, default_name="", write=True)
                    create_checked_repo(dataset_id, self.token, private=self.private, repo_type="dataset")
                outcome = [(repo_id, dataset_id)]
            except Exception as error:  # whatever it is, every process must hear of it, or they wait forever
                failure, outcome = error, [f"error: {error}"]
        broadcast_object_list(outcome)
        if failure is not None:
            raise failure
        if isinstance(outcome[0], str):
            raise ValueError(outcome[0].removeprefix("error: "))
        self.repo_id, self.dataset_id = outcome[0]

    def download_checkpoint(self) -> Path:
        """``--resume_from_checkpoint hub``: the run's ``last-checkpoint/``, downloaded (collective)."""
        state = PartialState()
        found: list[object] = [None]
        failure: Exception | None = None
        if state.is_main_process:
            try:
                found = [str(download_hub_checkpoint(self.repo_id, self.output_dir, token=self.token))]
            except Exception as error:  # whatever it is, every process must hear of it, or they wait forever
                failure, found = error, [f"error: {error}"]
        broadcast_object_list(found)
        if failure is not None:
            raise failure
        if str(found[0]).startswith("error: "):
            raise FileNotFoundError(str(found[0]).removeprefix("error: "))
        return Path(str(found[0]))

    def after_checkpoint(self, step: int, checkpoint: Path, write_model: Callable[[Path], None]) -> None:
        """``every_save``: push the current model; ``checkpoint``: with the training state. Main process only.

        A failed push here is reported and training goes on: the next save pushes the whole
        model again.
        """
        if self.strategy not in ("every_save", "checkpoint") or not PartialState().is_main_process:
            return
        with tempfile.TemporaryDirectory(prefix="nemo_hf-push-") as folder:
            write_model(Path(folder))
            try:
                push_model_folder(folder, self.repo_id, token=self.token, message=f"Training in progress, step {step}",
                                  checkpoint=checkpoint if self.strategy == "checkpoint" else None)
            except HubPushError as error:
                print(f"warning: {error}; training goes on, the next checkpoint pushes again")

    def after_training(self, final: Path, results: dict) -> str | None:
        """Push ``final/`` (every strategy); the commit id. Main process only (None elsewhere)."""
        if self.strategy is None or not PartialState().is_main_process:
            return None
        scores = ", ".join(f"{split} oIoU {r['overall_iou']:.4f}" for split, r in results.get("eval", {}).items())
        message = f"End of training: step {results['train_steps']}" + (f" ({scores})" if scores else "")
        commit = push_model_folder(final, self.repo_id, token=self.token, message=message)
        (self.output_dir / "logs").mkdir(exist_ok=True)
        record = {"repo_id": self.repo_id, "commit": commit, "endpoint": _where()}
        (self.output_dir / "logs" / "hub_push.json").write_text(json.dumps(record, indent=2))
        return commit

    def push_training_set(
        self, train: TrainData, eval_splits: Mapping[str, datasets.Dataset], *, dataset_name: str,
        augmentation: AugmentationArguments, seed: int,
    ) -> str | None:
        """``--push_dataset_to_hub``: the mined training rows and the evaluation splits, as one config; its name.

        Main process only (None elsewhere), after training: no other process waits on an
        upload that may take longer than a collective's timeout.
        """
        if self.dataset_id is None or not PartialState().is_main_process:
            return None
        if train.mined is None:
            raise ValueError("no mined training set to push: the run did not use NeMo")
        config_name = f"{dataset_name}-nemo"
        splits = {"train": train.mined, **{name: _with_empty_negatives(part, train.mined)
                                           for name, part in eval_splits.items()}}
        clip = None if train.premined else model_source(augmentation.clip_model, augmentation.clip_revision)
        settings = dataclasses.asdict(augmentation)
        with tempfile.TemporaryDirectory(prefix="nemo_hf-samples-") as folder:
            train.set_epoch(0)
            picture = save_mosaic_grid(train.dataset.select(range(min(8, len(train.dataset)))),
                                       Path(folder) / "samples.png")
            mining = mining_summary(settings=settings, clip=clip, seed=seed, report=train.report,
                                    picture=f"{config_name}/samples.png")
            push_mined_dataset(datasets.DatasetDict(splits), self.dataset_id, config_name,
                               source_config=dataset_name, mining=mining, picture=picture, private=self.private,
                               token=self.token)
        return config_name


def _with_empty_negatives(split: datasets.Dataset, mined: datasets.Dataset) -> datasets.Dataset:
    """An evaluation split with the mined split's negative columns, empty: one schema for the whole config."""
    for name in (c for c in mined.column_names if c not in split.column_names):
        split = split.add_column(name, [None] * len(split), feature=mined.features[name])
    return split
