"""Gathering per-sample metric records from every process.

The metrics keep one small record per sample (int64 pixel counts and labels) and gather
the records, not partial averages, so that every process ends with the very same list
and computes the very same numbers as a single process would on the whole data.

Which processes take part:

- ``accelerator`` given (an ``accelerate.Accelerator`` or ``PartialState``, anything with
  ``num_processes``): its processes, through ``accelerate.utils.gather_object``;
- otherwise, when ``torch.distributed`` is initialised: the default process group;
- otherwise the records are returned as they are.

Every process must call this (it is a collective operation).

>>> gather_records([(1, 2)])
[(1, 2)]
"""

from __future__ import annotations

from typing import Any, Protocol, TypeVar

import torch.distributed as dist

Record = TypeVar("Record")


class HasNumProcesses(Protocol):
    """An ``accelerate.Accelerator`` or ``accelerate.PartialState``."""

    @property
    def num_processes(self) -> int: ...


def gather_records(records: list[Record], accelerator: HasNumProcesses | None = None) -> list[Record]:
    """All processes' records, concatenated in rank order, on every process."""
    if accelerator is not None:
        if accelerator.num_processes <= 1:
            return list(records)
        from accelerate.utils import gather_object

        return list(gather_object(list(records)))
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        per_rank: list[Any] = [None] * dist.get_world_size()
        dist.all_gather_object(per_rank, list(records))
        return [record for rank_records in per_rank for record in rank_records]
    return list(records)
