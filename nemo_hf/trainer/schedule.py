"""The learning-rate schedule of ``training/train.py``: any ``transformers`` schedule, or CRIS's step decay.

``lr_scheduler_type`` names a ``transformers.get_scheduler`` schedule (``cosine``,
``linear``, ``constant``, …) or ``"multistep"``: the rate is multiplied by ``lr_decay``
after each epoch listed in ``lr_milestones`` (after a linear warm-up of
``num_warmup_steps``, if any), which is PyTorch's ``MultiStepLR`` stepped per optimizer
step. CRIS trains so: 50 epochs, ×0.1 after epoch 35. Milestones count whole epochs of
optimizer updates, so they fall at the same samples on any number of processes.

    >>> import torch
    >>> optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    >>> scheduler = build_scheduler(optimizer, "multistep", updates_per_epoch=2, max_steps=8,
    ...                             milestones=[2, 3], decay=0.1)
    >>> rates = []
    >>> for _ in range(8):
    ...     rates.append(round(scheduler.get_last_lr()[0], 6)); optimizer.step(); scheduler.step()
    >>> rates
    [1.0, 1.0, 1.0, 1.0, 0.1, 0.1, 0.01, 0.01]
"""

from __future__ import annotations

import bisect
import functools
from collections.abc import Sequence

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR, LRScheduler
from transformers import get_scheduler

__all__ = ["MULTISTEP", "build_scheduler"]

MULTISTEP = "multistep"


def _multistep_factor(step: int, *, warmup: int, milestones: Sequence[int], decay: float) -> float:
    """``decay`` to the number of milestones passed, after ``transformers``' linear warm-up (module-level: picklable)."""
    if step < warmup:
        return step / warmup
    return decay ** bisect.bisect_right(milestones, step)


def build_scheduler(
    optimizer: Optimizer,
    name: str,
    *,
    updates_per_epoch: int,
    max_steps: int,
    num_warmup_steps: int = 0,
    milestones: Sequence[int] = (),
    decay: float = 0.1,
) -> LRScheduler:
    """The schedule ``name`` over ``max_steps`` optimizer steps; ``milestones`` (epochs) and ``decay`` for ``"multistep"``."""
    if name != MULTISTEP:
        return get_scheduler(name, optimizer, num_warmup_steps=num_warmup_steps, num_training_steps=max_steps)
    steps = sorted(epoch * updates_per_epoch for epoch in milestones)
    factor = functools.partial(_multistep_factor, warmup=num_warmup_steps, milestones=steps, decay=decay)
    return LambdaLR(optimizer, factor)
