"""Model repositories: the checks before a push, one-commit pushes of a model folder, and training state.

A training run pushes its model folder (``final/``: weights, config, processor, model card,
``all_results.json``, ``train_config.yaml``) and, with ``--hub_strategy checkpoint``, the
training state of a checkpoint under ``last-checkpoint/``. Everything else never leaves the
machine: optimizer and RNG files are refused outside ``last-checkpoint/``
(:func:`push_operations`). Each push is **one commit**, all or nothing: a push that fails
midway (a dropped connection, a refused file) raises :class:`HubPushError` and leaves the
repository's branch as it was. Ids, tokens and rights are checked before anything is built
(:func:`checked_repo_id`).

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

import fnmatch
import os
import shlex
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi, constants, snapshot_download
from huggingface_hub.errors import (
    HFValidationError,
    HfHubHTTPError,
    LocalTokenNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from huggingface_hub.utils import validate_repo_id

__all__ = [
    "HUB_CHECKPOINT_DIR",
    "TRAINER_STATE_FILE",
    "TRAINING_STATE_PATTERNS",
    "HubPushError",
    "checked_repo_id",
    "create_checked_repo",
    "download_hub_checkpoint",
    "endpoint",
    "push_model_folder",
    "push_operations",
    "retry_command",
]

HUB_CHECKPOINT_DIR = "last-checkpoint"
# the file a training checkpoint keeps its step and run in (nemo_hf.trainer.checkpoints writes it)
TRAINER_STATE_FILE = "trainer_state.json"
# what accelerator.save_state and the checkpoints add to a model: never at a model repo's top level
TRAINING_STATE_PATTERNS = ("optimizer*", "scheduler*", "sampler*", "random_states*", "custom_checkpoint*", "*.pkl",
                           "pytorch_model_fsdp*", TRAINER_STATE_FILE)


class HubPushError(RuntimeError):
    """A push that did not land; the repository is as it was before it."""


def endpoint() -> str:
    """The Hub this process talks to (``HF_ENDPOINT``)."""
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
            f"pushing to the Hub ({endpoint()}) needs a token with write access: run `hf auth login`, set HF_TOKEN, "
            "or pass --hub_token"
        ) from None
    except HfHubHTTPError as error:
        if error.response is not None and error.response.status_code == 401:
            raise ValueError(f"the Hub at {endpoint()} refused the token (401): {error}") from None
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
    state = [p.name for p in files if any(fnmatch.fnmatch(p.name, pattern) for pattern in TRAINING_STATE_PATTERNS)]
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
            f"pushing {folder} to {repo_id} on {endpoint()} failed: {error}. Nothing of it landed (a commit is all or "
            "nothing), so the repository is as it was; push again once the cause is fixed, e.g. "
            f"`{retry_command(folder, repo_id, checkpoint)}`"
        ) from error


def retry_command(
    folder: str | os.PathLike[str], repo_id: str, checkpoint: str | os.PathLike[str] | None = None
) -> str:
    """The shell command that pushes ``folder`` (and ``checkpoint`` under ``last-checkpoint/``) by hand.

    Paths are absolute and quoted, so the command works from any folder and with any name.

    >>> retry_command("/runs/my run/final", "me/model")
    "hf upload me/model '/runs/my run/final' ."
    """
    command = f"hf upload {repo_id} {shlex.quote(os.path.abspath(folder))} ."
    if checkpoint is not None:
        command += f" && hf upload {repo_id} {shlex.quote(os.path.abspath(checkpoint))} {HUB_CHECKPOINT_DIR}"
    return command


def download_hub_checkpoint(
    repo_id: str, into: Path, *, token: str | None = None, revision: str | None = None
) -> Path:
    """Download ``last-checkpoint/`` of ``repo_id`` into a new folder inside ``into``; that folder.

    Call it on the main process only. The caller moves the folder where its checkpoints live
    (:func:`nemo_hf.trainer.checkpoints.adopt_checkpoint` names it by its step).
    """
    api = HfApi(token=token)
    try:
        files = api.list_repo_files(repo_id, revision=revision)
    except (RepositoryNotFoundError, RevisionNotFoundError) as error:
        raise FileNotFoundError(
            f"--resume_from_checkpoint hub: {repo_id} (revision {revision or 'main'}) is not on {endpoint()}, or is "
            "private and the token is not its owner's"
        ) from error
    if f"{HUB_CHECKPOINT_DIR}/{TRAINER_STATE_FILE}" not in files:
        raise FileNotFoundError(
            f"--resume_from_checkpoint hub: {repo_id} holds no {HUB_CHECKPOINT_DIR}/{TRAINER_STATE_FILE}; only runs "
            "pushed with --hub_strategy checkpoint leave one, from their first checkpoint on"
        )
    into.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".hub-download-", dir=into))
    try:
        snapshot_download(repo_id, revision=revision, token=token, allow_patterns=[f"{HUB_CHECKPOINT_DIR}/*"],
                          local_dir=staging)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return staging / HUB_CHECKPOINT_DIR
