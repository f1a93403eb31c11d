"""Checkpoints that are complete or absent: ``accelerator.save_state`` into a temporary folder, then rename.

A checkpoint is ``<output_dir>/checkpoints/step_<N>/``: everything ``save_state`` writes
(model, optimizer, scheduler, sampler, every process's RNG states) plus
``trainer_state.json`` (the optimizer step count and the running loss sums). It is
written as ``.step_<N>.tmp`` and renamed only once every process has finished writing, so
a run killed mid-save leaves a hidden temporary folder that resuming ignores and the next
save removes. Multi-node runs need ``output_dir`` on a filesystem every node sees.

    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> (folder / "checkpoints" / "step_3").mkdir(parents=True)
    >>> (folder / "checkpoints" / "step_3" / TRAINER_STATE).write_text('{"completed_steps": 3}')
    22
    >>> (folder / "checkpoints" / ".step_5.tmp").mkdir()
    >>> find_checkpoint("latest", folder).name
    'step_3'
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

from accelerate import Accelerator

__all__ = ["TRAINER_STATE", "find_checkpoint", "read_trainer_state", "save_checkpoint"]

TRAINER_STATE = "trainer_state.json"
_STEP_DIR = re.compile(r"step_(\d+)")


def _checkpoints(output_dir: Path) -> list[tuple[int, Path]]:
    folder = output_dir / "checkpoints"
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _STEP_DIR.fullmatch(p.name)) and p.is_dir()]
    return sorted(found)


def save_checkpoint(
    accelerator: Accelerator, output_dir: Path, state: dict[str, Any], total_limit: int | None
) -> Path:
    """Save the full training state as ``checkpoints/step_<state["completed_steps"]>`` (collective)."""
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
            for _, old in _checkpoints(output_dir)[:-total_limit]:
                shutil.rmtree(old)
    accelerator.wait_for_everyone()
    return final


def find_checkpoint(resume_from: str, output_dir: Path) -> Path:
    """The checkpoint to resume from: a folder, or ``"latest"`` (highest step under ``output_dir``)."""
    if resume_from == "latest":
        found = _checkpoints(output_dir)
        if not found:
            raise FileNotFoundError(f"resume_from_checkpoint=latest, but {output_dir / 'checkpoints'} holds none")
        return found[-1][1]
    path = Path(resume_from)
    if not (path / TRAINER_STATE).is_file():
        raise FileNotFoundError(f"{path} is not a checkpoint of training/train.py (no {TRAINER_STATE} in it)")
    return path


def read_trainer_state(checkpoint: Path) -> dict[str, Any]:
    """The ``trainer_state.json`` of a checkpoint."""
    return json.loads((checkpoint / TRAINER_STATE).read_text())
