"""Where mining runs: this process's place in an ``accelerate launch`` run, and its device.

    >>> process_state().num_processes
    1
    >>> resolve_device("cpu")
    device(type='cpu')
"""

from __future__ import annotations

import torch
from accelerate import PartialState
from accelerate.utils import parse_flag_from_env

__all__ = ["process_state", "resolve_device"]


def process_state() -> PartialState:
    """Accelerate's process state; CPU-only when launched with ``ACCELERATE_USE_CPU=1``.

    (``PartialState()`` alone treats CPU processes started by ``accelerate launch`` as
    unrelated single processes; an existing state, e.g. an ``Accelerator``'s, is reused.)
    """
    return PartialState(cpu=parse_flag_from_env("ACCELERATE_USE_CPU"))


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``device`` if given, else this process's accelerator (CUDA under launch) or CPU."""
    return torch.device(device) if device is not None else process_state().device
