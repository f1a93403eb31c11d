"""Trackers: a JSON lines log that is always on, and whichever Accelerate trackers are installed.

``metrics.jsonl`` gets one line per ``accelerator.log`` call: ``{"step": …, "time": …,
<name>: <value>, …}``. A resumed run rewrites it without the lines logged after the
checkpoint it resumes from (the killed run got further than its last checkpoint), so the
file reads as one uninterrupted run.

    >>> import json, tempfile
    >>> folder = tempfile.mkdtemp()
    >>> tracker = JSONLinesTracker("run", folder)
    >>> tracker.log({"train/loss": 0.5}, step=1); tracker.log({"train/loss": 0.4}, step=2)
    >>> resumed = JSONLinesTracker("run", folder, resume_step=1)
    >>> resumed.start()  # Accelerator.init_trackers calls it
    >>> [json.loads(line)["step"] for line in open(resumed.tracker)]
    [1]
"""

from __future__ import annotations

import json
import math
import os
import time
import warnings
from pathlib import Path
from typing import Any

from accelerate.tracking import GeneralTracker
from accelerate.utils import is_tensorboard_available

__all__ = ["JSONLinesTracker", "flatten_scalars", "make_trackers"]

METRICS_FILE = "metrics.jsonl"


class JSONLinesTracker(GeneralTracker):
    """Appends every logged dict as a JSON line to ``<logging_dir>/metrics.jsonl`` (main process only)."""

    name = "jsonl"
    requires_logging_directory = True
    main_process_only = True

    def __init__(self, run_name: str, logging_dir: str | os.PathLike, resume_step: int | None = None) -> None:
        super().__init__()
        self.run_name = run_name
        self.path = Path(logging_dir) / METRICS_FILE
        self.resume_step = resume_step

    def start(self) -> None:
        """Create the folder; on resume, drop the lines logged after ``resume_step``."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.resume_step is not None and self.path.exists():
            kept = [
                line for line in self.path.read_text().splitlines()
                if line.strip() and json.loads(line).get("step", 0) <= self.resume_step
            ]
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text("".join(line + "\n" for line in kept))
            os.replace(tmp, self.path)

    @property
    def tracker(self) -> Path:
        """The log file."""
        return self.path

    def store_init_configuration(self, values: dict[str, Any]) -> None:
        """Hyperparameters go to ``hparams.json`` beside the log."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        (self.path.parent / "hparams.json").write_text(json.dumps(values, indent=2, default=str))

    def log(self, values: dict[str, Any], step: int | None = None, **kwargs: Any) -> None:
        """Append one line."""
        if not self.path.parent.exists():
            self.start()
        with self.path.open("a") as handle:
            handle.write(json.dumps({"step": step, "time": time.time(), **values}) + "\n")


def flatten_scalars(values: dict[str, Any], prefix: str = "") -> dict[str, float | int | str]:
    """Nested results → ``{"a/b/c": scalar}``, as trackers take them; non-finite floats dropped.

    >>> flatten_scalars({"val": {"overall_iou": 0.5, "groups": {"size=small": {"count": 3}}}})
    {'val/overall_iou': 0.5, 'val/groups/size=small/count': 3}
    """
    flat: dict[str, float | int | str] = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten_scalars(value, prefix=f"{name}/"))
        elif isinstance(value, bool) or value is None:
            flat[name] = str(value)
        elif isinstance(value, (int, str)) or (isinstance(value, float) and math.isfinite(value)):
            flat[name] = value
    return flat


def make_trackers(report_to: str, logging_dir: Path, resume_step: int | None) -> list[GeneralTracker | str]:
    """``log_with`` for the Accelerator: the JSON lines tracker plus the ``report_to`` ones.

    ``tensorboard`` is skipped with a warning when it is not installed.
    """
    trackers: list[GeneralTracker | str] = [JSONLinesTracker("train", logging_dir, resume_step=resume_step)]
    for name in (part.strip() for part in report_to.split(",")):
        if name in ("", "none", "jsonl"):
            continue
        if name == "tensorboard" and not is_tensorboard_available():
            warnings.warn("report_to names tensorboard, which is not installed: logging to metrics.jsonl only",
                          stacklevel=2)
            continue
        trackers.append(name)
    return trackers
