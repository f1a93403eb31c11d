"""The output folder of a run: one run per folder, and the final model apart from the training state.

``training/train.py`` and ``training/train_clip.py`` write::

    <output_dir>/
        final/                 the model folder: weights, config, processor, README.md (model
                               card), all_results.json, train_config.yaml: upload this folder,
                               or load it with from_pretrained
        train_config.yaml      the resolved arguments, written when the run starts
        checkpoints/step_<N>/  the training state (optimizer, scheduler, RNG states) for resuming
        logs/                  metrics.jsonl, hparams.json, TensorBoard events

:func:`claim_output_dir` refuses a folder that already holds something, unless the run
resumes from one of its checkpoints or ``overwrite`` is given (the transformers
convention): two runs in one folder would share ``checkpoints/`` and ``logs/``. Overwriting
first moves the old run's entries into one hidden folder, then deletes it, so a crash
in between leaves the old run (partly) in place, never a mix of the two.
:func:`writing_final` writes ``final/`` beside it and renames it into place when complete.

A run that stopped before it saved a checkpoint or its model (a typo in the data path, a
run killed in its first epoch) leaves only :data:`TRAIN_LEFTOVERS`: its
``train_config.yaml``, ``logs/``, and at most unfinished checkpoint or model folders.
There is nothing there to resume or to keep, so such a folder is no run to protect: the
next run takes it over (saying so) instead of sending its user to
``--resume_from_checkpoint latest``, which would find no checkpoint either. The error for a
folder that does hold a run says only what applies to it: resuming where a checkpoint
exists, overwriting, another folder.

    >>> import tempfile
    >>> out = Path(tempfile.mkdtemp())
    >>> (out / "checkpoints" / "step_4").mkdir(parents=True)
    >>> _ = (out / "checkpoints" / "step_4" / "trainer_state.json").write_text("{}")
    >>> claim_output_dir(out, TRAIN_ENTRIES, overwrite=False, leftovers=TRAIN_LEFTOVERS)
    Traceback (most recent call last):
    ...
    FileExistsError: ... already holds a run: ['checkpoints']. Pass --resume_from_checkpoint latest to continue it ...
    >>> claim_output_dir(out, TRAIN_ENTRIES, overwrite=True)
    >>> sorted(p.name for p in out.iterdir())
    []
    >>> _ = (out / "train_config.yaml").write_text("seed: 0")  # a run that failed before it saved anything
    >>> claim_output_dir(out, TRAIN_ENTRIES, overwrite=False, leftovers=TRAIN_LEFTOVERS)
    note: ... held only what a run that saved no checkpoint and no model leaves (...): this run replaces it
    >>> sorted(p.name for p in out.iterdir())
    []
    >>> with writing_final(out) as folder:
    ...     _ = (folder / "config.json").write_text("{}")
    >>> sorted(p.name for p in (out / FINAL_DIR).iterdir()), model_folder(out) == str(out / FINAL_DIR)
    (['config.json'], True)
"""

from __future__ import annotations

import contextlib
import fnmatch
import os
import shutil
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path

from nemo_hf.mining.device import process_state
from nemo_hf.trainer.checkpoints import TRAINER_STATE

__all__ = [
    "EVAL_ENTRIES",
    "FINAL_DIR",
    "TRAIN_ENTRIES",
    "TRAIN_LEFTOVERS",
    "claim_output_dir",
    "model_folder",
    "writing_final",
]

FINAL_DIR = "final"
_FINAL_TMP = f".{FINAL_DIR}.tmp"
_TRASH_PREFIX = ".overwritten-"
# what a training run writes (glob patterns): what --overwrite_output_dir removes
TRAIN_ENTRIES = (FINAL_DIR, _FINAL_TMP, "checkpoints", "logs", "train_config.yaml", f"{_TRASH_PREFIX}*")
# what a training run that saved no checkpoint and no model leaves (glob patterns); checkpoints/ counts when
# it holds no complete checkpoint (only the hidden folders of saves that never finished)
TRAIN_LEFTOVERS = ("train_config.yaml", "logs", _FINAL_TMP, "checkpoints", f"{_TRASH_PREFIX}*")
# what training/eval_ris.py writes
EVAL_ENTRIES = ("eval_results.json", "predictions_*.png", f"{_TRASH_PREFIX}*")


def _is_inside(path: Path, folder: Path) -> bool:
    return folder.resolve() in path.resolve().parents


def claim_output_dir(
    output_dir: str | os.PathLike[str],
    entries: Sequence[str],
    *,
    overwrite: bool,
    resume_from: str | os.PathLike[str] | None = None,
    leftovers: Sequence[str] = (),
    holder: str = "a run",
) -> None:
    """Make ``output_dir`` this run's: refuse one that holds anything, or clear the old run's ``entries``.

    A run resuming from a checkpoint inside ``output_dir`` continues the run there and
    changes nothing. A folder that holds nothing but ``leftovers`` (:data:`TRAIN_LEFTOVERS`
    for training: what a run that saved no checkpoint and no model leaves) is cleared as
    ``overwrite`` would, with a note. ``holder`` names what ``entries`` make up in the error
    ("a run", "an evaluation"). Collective in a distributed run (every process calls it): all
    look before the main process clears.
    """
    output_dir = Path(output_dir)
    state = process_state()
    resuming_here = resume_from is not None and _is_inside(Path(resume_from), output_dir)
    if resuming_here and overwrite:
        raise ValueError(
            f"--overwrite_output_dir would delete {resume_from}, the checkpoint to resume from: give one or the other"
        )
    held = sorted(p.name for p in output_dir.iterdir()) if output_dir.is_dir() and not resuming_here else []
    only_leftovers = bool(held) and all(_is_leftover(output_dir / name, leftovers) for name in held)
    state.wait_for_everyone()  # every process has looked before the main process changes anything
    if held and not overwrite and not only_leftovers:
        raise FileExistsError(_refusal(output_dir, held, entries, holder))
    if held and state.is_main_process:
        if only_leftovers and not overwrite:
            print(f"note: {output_dir} held only what a run that saved no checkpoint and no model leaves "
                  f"({held}): this run replaces it")
        _clear(output_dir, entries)
    state.wait_for_everyone()


def _complete_checkpoints(output_dir: Path) -> list[str]:
    """The checkpoints under ``output_dir/checkpoints`` that a resume can use, by step."""
    steps = [p.name for p in (output_dir / "checkpoints").glob("step_*") if (p / TRAINER_STATE).is_file()]
    return sorted(steps, key=lambda name: int(name.removeprefix("step_")) if name[5:].isdigit() else -1)


def _is_leftover(path: Path, leftovers: Sequence[str]) -> bool:
    if not any(fnmatch.fnmatch(path.name, pattern) for pattern in leftovers):
        return False
    return path.name != "checkpoints" or not _complete_checkpoints(path.parent)


def _refusal(output_dir: Path, held: list[str], entries: Sequence[str], holder: str) -> str:
    """Why ``output_dir`` is refused, and only the ways out that apply to what it holds."""
    shown = f"{held[:8]}{' …' if len(held) > 8 else ''}"
    ours = [name for name in held if any(fnmatch.fnmatch(name, pattern) for pattern in entries)]
    others = [name for name in held if name not in ours]
    if not ours:
        return (f"{output_dir} already holds {shown}, none of it {holder}'s: choose another --output_dir (an empty "
                "or new one)")
    checkpoints = _complete_checkpoints(output_dir)
    if checkpoints:
        ways = (f"Pass --resume_from_checkpoint latest to continue it (from checkpoints/{checkpoints[-1]}), "
                "--overwrite_output_dir to replace it, or another --output_dir")
    else:
        ways = "Pass --overwrite_output_dir to replace it, or another --output_dir"
    kept = f" (--overwrite_output_dir keeps what is not {holder}'s: {others[:8]})" if others else ""
    return f"{output_dir} already holds {holder}: {shown}. {ways}{kept}"


def _clear(output_dir: Path, entries: Sequence[str]) -> None:
    """Move every entry into one hidden folder (each rename atomic), then delete that folder."""
    trash = output_dir / f"{_TRASH_PREFIX}{uuid.uuid4().hex[:8]}"
    trash.mkdir()
    for pattern in entries:
        for path in output_dir.glob(pattern):
            if path != trash:
                os.replace(path, trash / path.name)
    shutil.rmtree(trash)


@contextlib.contextmanager
def writing_final(output_dir: str | os.PathLike[str]) -> Iterator[Path]:
    """A fresh folder to write the final model into; it becomes ``output_dir/final`` once complete."""
    output_dir = Path(output_dir)
    tmp, final = output_dir / _FINAL_TMP, output_dir / FINAL_DIR
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if final.exists():  # a resumed run that had finished before
        shutil.rmtree(final)
    os.replace(tmp, final)


def model_folder(name_or_path: str | os.PathLike[str]) -> str:
    """The model of a training run's ``output_dir`` (its ``final/``); any other name or path unchanged."""
    final = Path(name_or_path) / FINAL_DIR
    if not (Path(name_or_path) / "config.json").is_file() and (final / "config.json").is_file():
        return str(final)
    return os.fspath(name_or_path)
