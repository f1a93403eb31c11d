"""Checkpoints that are complete or absent, rotated and found per run.

A checkpoint is ``<output_dir>/checkpoints/step_<N>/``: everything ``accelerator.save_state``
writes (model, optimizer, scheduler, sampler, every process's RNG states) plus
``trainer_state.json``: the optimizer step count, the running loss sums and the run it
belongs to (``run_id``, and ``run_started``, the time the run began; a resumed run keeps
both). It is written as ``.step_<N>.tmp`` and renamed only once every process has finished
writing, so a run killed mid-save leaves a hidden temporary folder that resuming ignores
and the next save removes. Multi-node runs need ``output_dir`` on a filesystem every node sees.

Step numbers alone cannot tell runs apart: a new run's step 50 is lower than an old run's
step 200. So rotation (``total_limit``) only ever deletes checkpoints of the run that
saves, and ``latest`` is the highest step of the newest run (by ``run_started``).

    >>> import json, tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> def fake(step, state):
    ...     (folder / "checkpoints" / f"step_{step}").mkdir(parents=True)
    ...     _ = (folder / "checkpoints" / f"step_{step}" / TRAINER_STATE).write_text(json.dumps(state))
    >>> fake(200, {"completed_steps": 200, "run_id": "old", "run_started": 1.0})
    >>> fake(50, {"completed_steps": 50, **new_run()})
    >>> (folder / "checkpoints" / ".step_60.tmp").mkdir()
    >>> find_checkpoint("latest", folder).name
    'step_50'
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from accelerate import Accelerator

from nemo_hf.hub.model_repos import TRAINER_STATE_FILE

__all__ = ["TRAINER_STATE", "adopt_checkpoint", "find_checkpoint", "new_run", "read_trainer_state", "save_checkpoint",
           "starting_state"]

TRAINER_STATE = TRAINER_STATE_FILE  # the Hub code refuses to push it outside last-checkpoint/
_STEP_DIR = re.compile(r"step_(\d+)")


def new_run() -> dict[str, Any]:
    """The identity of a run that starts now: ``{"run_id": …, "run_started": …}``.

    Every process draws its own; only the main process's is written (it alone writes
    ``trainer_state.json`` and rotates).
    """
    return {"run_id": uuid.uuid4().hex, "run_started": time.time()}


def starting_state(checkpoint: Path | None) -> dict[str, Any]:
    """What a run starts from: the checkpoint's ``trainer_state.json``, or a new run at step 0.

    A checkpoint saved before checkpoints named their run continues as a new run.
    """
    return {**new_run(), **(read_trainer_state(checkpoint) if checkpoint is not None else {"completed_steps": 0})}


@dataclass(frozen=True)
class _Checkpoint:
    path: Path
    step: int
    run_id: str | None  # None: saved before checkpoints named their run
    run_started: float


def _checkpoints(output_dir: Path) -> list[_Checkpoint]:
    """The complete checkpoints under ``output_dir``, oldest run first, then by step."""
    folder = output_dir / "checkpoints"
    if not folder.is_dir():
        return []
    found = []
    for path in folder.iterdir():
        if (match := _STEP_DIR.fullmatch(path.name)) and (path / TRAINER_STATE).is_file():
            state = read_trainer_state(path)
            found.append(_Checkpoint(path, int(match.group(1)), state.get("run_id"), float(state.get("run_started", 0))))
    return sorted(found, key=lambda c: (c.run_started, c.step))


def save_checkpoint(
    accelerator: Accelerator, output_dir: Path, state: dict[str, Any], total_limit: int | None
) -> Path:
    """Save the full training state as ``checkpoints/step_<state["completed_steps"]>`` (collective).

    ``state`` holds ``run_id`` (see :func:`new_run`); of that run's checkpoints, the
    ``total_limit`` of highest step are kept. Other runs' checkpoints are left alone.
    """
    step = int(state["completed_steps"])
    final = output_dir / "checkpoints" / f"step_{step}"
    tmp = final.with_name(f".{final.name}.tmp")
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        (tmp / TRAINER_STATE).write_text(json.dumps(state, indent=2))
        if final.exists():  # the same step saved again, e.g. by a run resumed from its last step
            shutil.rmtree(final)
        os.replace(tmp, final)
        if total_limit is not None:
            ours = [c for c in _checkpoints(output_dir) if c.run_id == state["run_id"]]
            for old in ours[: max(len(ours) - total_limit, 0)]:
                shutil.rmtree(old.path)
    accelerator.wait_for_everyone()
    return final


def find_checkpoint(resume_from: str, output_dir: Path) -> Path:
    """The checkpoint to resume from: a folder, or ``"latest"`` (the newest run's highest step)."""
    if resume_from == "latest":
        found = _checkpoints(output_dir)
        if not found:
            raise FileNotFoundError(
                f"--resume_from_checkpoint latest, but {output_dir / 'checkpoints'} holds no checkpoint: the run "
                "there stopped before its first save (every checkpointing_steps), so there is nothing to resume; "
                "start it again without --resume_from_checkpoint (a folder holding only such a run's "
                "train_config.yaml and logs/ is taken over)"
            )
        newest = found[-1].run_id
        return max((c for c in found if c.run_id == newest), key=lambda c: c.step).path
    path = Path(resume_from)
    if not (path / TRAINER_STATE).is_file():
        raise FileNotFoundError(f"{path} is not a checkpoint of nemo_hf's training scripts (no {TRAINER_STATE} in it)")
    return path


def read_trainer_state(checkpoint: Path) -> dict[str, Any]:
    """The ``trainer_state.json`` of a checkpoint."""
    path = checkpoint / TRAINER_STATE
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON ({error}): remove that checkpoint or resume from another") from error



def adopt_checkpoint(folder: Path, output_dir: Path) -> Path:
    """Move a complete checkpoint (one downloaded from the Hub) to ``output_dir/checkpoints/step_<N>``; that path.

    A checkpoint of the same step already there is replaced: the one adopted is the one asked for.
    """
    target = output_dir / "checkpoints" / f"step_{int(read_trainer_state(folder)['completed_steps'])}"
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists():
        shutil.rmtree(target)
    os.replace(folder, target)
    if folder.parent.name.startswith(".hub-download-"):
        shutil.rmtree(folder.parent, ignore_errors=True)
    return target
