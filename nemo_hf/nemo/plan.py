"""Every random decision of one NeMo sample, drawn from one generator seeded per example.

A plan says whether the sample is a single image, a random mosaic or a mined mosaic, which
negatives fill the other cells (in cell order), which cell holds the query image and where
the grid's cross point sits. Drawing pixels is left to :mod:`nemo_hf.mosaic`; choosing
candidates to :mod:`nemo_hf.mining`. A ref's several sentences: :func:`pick_sentence`.

The generator is seeded by ``(seed, epoch, ref_id, sent_id)`` — the sentence's identity,
not its position — so the same sample in the same epoch gets the same mosaic in any
process, DataLoader worker or ``num_proc`` shard, and after any shuffle.

>>> import numpy as np
>>> rng = example_rng(seed=0, epoch=0, ref_id=7, sent_id=3)
>>> plan = plan_sample(rng, sentence="the man on the left", own_image_id=1, mined_ids=[5, 6, 8, 9],
...                    pool_ids=np.arange(1, 20), grid=2, mosaic_prob=1.0, random_share=0.0,
...                    warmup=False, position_aware=True, cross_point_jitter=0.0)
>>> plan.kind, plan.target_cell in (0, 2), len(plan.negative_ids), 1 in plan.negative_ids
('mined', True, 3, False)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Sequence

import numpy as np

from nemo_hf.mining.selection import require_candidates
from nemo_hf.mosaic.layout import sample_cross_point
from nemo_hf.mosaic.position import allowed_cells

__all__ = ["MosaicKind", "MosaicPlan", "example_rng", "pick_sentence", "plan_sample"]

MosaicKind = Literal["single", "random", "mined"]
_UINT64 = (1 << 64) - 1


def example_rng(seed: int, epoch: int, ref_id: int, sent_id: int) -> np.random.Generator:
    """The generator of one sample; negative ids (e.g. a missing ``sent_id``) are allowed."""
    entropy = [seed & _UINT64, epoch & _UINT64, ref_id & _UINT64, sent_id & _UINT64]
    return np.random.default_rng(np.random.SeedSequence(entropy))


def pick_sentence(seed: int, epoch: int, ref_id: int, count: int) -> int:
    """Which of a ref's ``count`` sentences a training access draws in ``epoch``.

    >>> pick_sentence(0, 0, 7, 3) == pick_sentence(0, 0, 7, 3)
    True
    """
    return int(example_rng(seed, epoch, ref_id, -1).integers(count))


@dataclass(frozen=True)
class MosaicPlan:
    """The random choices of one sample; ``negative_ids`` fill the non-target cells in order."""

    kind: MosaicKind
    negative_ids: tuple[int, ...] = ()
    target_cell: int = 0
    cross_point: tuple[float, float] | None = None

    def source_image_ids(self, own_image_id: int) -> list[int]:
        """Image ids in cell (row-major) order, the query's own image at ``target_cell``."""
        ids = list(self.negative_ids)
        ids.insert(self.target_cell, own_image_id)
        return ids


def plan_sample(
    rng: np.random.Generator,
    *,
    sentence: str,
    own_image_id: int,
    mined_ids: Sequence[int] | None,
    pool_ids: np.ndarray,
    grid: int,
    mosaic_prob: float,
    random_share: float,
    warmup: bool,
    position_aware: bool,
    cross_point_jitter: float,
) -> MosaicPlan:
    """Draw one sample's plan. ``mined_ids`` are the sentence's top-K candidates (or None).

    During warm-up every mosaic is random; afterwards a ``random_share`` of them is.
    Negatives are drawn without replacement and never include ``own_image_id``.
    """
    if rng.random() >= mosaic_prob:
        return MosaicPlan("single")
    needed = grid * grid - 1
    kind: MosaicKind = "random" if warmup or rng.random() < random_share else "mined"
    if kind == "mined":
        if mined_ids is None:
            raise ValueError("a mined mosaic needs negative_image_ids: run NeMo.mine first or give NeMo a CLIP model")
        # in ranking order, without repeats (a repeated id would repeat a negative)
        candidates = np.asarray(list(dict.fromkeys(int(i) for i in mined_ids if i != own_image_id)), dtype=np.int64)
    else:
        candidates = pool_ids[pool_ids != own_image_id]
    require_candidates(
        len(candidates), needed, f"for a {kind} mosaic of image {own_image_id} there are",
        f"mine with top_k >= {needed}" if kind == "mined" else "the pool is too small",
    )  # fmt: skip
    chosen = rng.choice(candidates, size=needed, replace=False)
    cells = allowed_cells(sentence, grid) if position_aware else list(range(grid * grid))
    target_cell = int(cells[rng.integers(len(cells))])
    cross_point = sample_cross_point(rng, cross_point_jitter) if cross_point_jitter > 0 else None
    return MosaicPlan(kind, tuple(int(i) for i in chosen), target_cell, cross_point)
