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

    >>> import tempfile
    >>> out = Path(tempfile.mkdtemp())
    >>> (out / "checkpoints").mkdir()
    >>> claim_output_dir(out, TRAIN_ENTRIES, overwrite=False)
    Traceback (most recent call last):
    ...
    FileExistsError: ... already holds ['checkpoints']: pass --resume_from_checkpoint latest ...
    >>> claim_output_dir(out, TRAIN_ENTRIES, overwrite=True)
    >>> sorted(p.name for p in out.iterdir())
    []
    >>> with writing_final(out) as folder:
    ...     _ = (folder / "config.json").write_text("{}")
    >>> sorted(p.name for p in (out / FINAL_DIR).iterdir()), model_folder(out) == str(out / FINAL_DIR)
    (['config.json'], True)
"""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path

from nemo_hf.mining.device import process_state

__all__ = [
    "EVAL_ENTRIES",
    "FINAL_DIR",
    "TRAIN_ENTRIES",
    "claim_output_dir",
    "model_folder",
    "writing_final",
]

FINAL_DIR = "final"
_FINAL_TMP = f".{FINAL_DIR}.tmp"
_TRASH_PREFIX = ".overwritten-"
# what a training run writes (glob patterns): what --overwrite_output_dir removes
TRAIN_ENTRIES = (FINAL_DIR, _FINAL_TMP, "checkpoints", "logs", "train_config.yaml", f"{_TRASH_PREFIX}*")
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
) -> None:
    """Make ``output_dir`` this run's: refuse one that holds anything, or clear the old run's ``entries``.

    A run resuming from a checkpoint inside ``output_dir`` continues the run there and
    changes nothing. Collective in a distributed run (every process calls it): all look
    before the main process clears.
    """
    output_dir = Path(output_dir)
    state = process_state()
    resuming_here = resume_from is not None and _is_inside(Path(resume_from), output_dir)
    if resuming_here and overwrite:
        raise ValueError(
            f"--overwrite_output_dir would delete {resume_from}, the checkpoint to resume from: give one or the other"
        )
    held = sorted(p.name for p in output_dir.iterdir()) if output_dir.is_dir() and not resuming_here else []
    state.wait_for_everyone()  # every process has looked before the main process changes anything
    if held and not overwrite:
        raise FileExistsError(
            f"{output_dir} already holds {held[:8]}{' …' if len(held) > 8 else ''}: pass "
            "--resume_from_checkpoint latest to continue the run there, --overwrite_output_dir to "
            "replace it, or another --output_dir"
        )
    if held and state.is_main_process:
        _clear(output_dir, entries)
    state.wait_for_everyone()


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
