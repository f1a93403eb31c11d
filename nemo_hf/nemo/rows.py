"""The rows NeMo reads and writes.

A batch comes in either of two shapes: one row per referred object (``sentences``,
``sent_ids``, and mined ``negative_image_ids`` as one list per sentence) or one row per
sentence (``sentence``, ``sent_id``, one list of ``negative_image_ids``). Out comes one
row per sample, with the columns of :data:`OUTPUT_COLUMNS`.

>>> batch = {"ref_id": [4], "sentences": [["left cat", "the cat"]], "sent_ids": [[8, 9]]}
>>> [(s.sentence, s.sent_id) for s in samples(batch)]
[('left cat', 8), ('the cat', 9)]
>>> [(s.sentence, s.sent_id) for s in samples(batch, pick=lambda ref_id, count: count - 1)]
[('the cat', 9)]
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

__all__ = ["OUTPUT_COLUMNS", "Sample", "samples", "sentence_lists", "to_columns", "with_candidates"]

OUTPUT_COLUMNS = ("image", "mask", "sentence", "ref_id", "sent_id", "image_id", "source_image_ids",
                  "target_cell", "mosaic_kind")  # fmt: skip


class Sample(NamedTuple):
    """One expression of a batch: its row, text, id and mined candidates (``None``: not mined)."""

    row: int
    sentence: str
    sent_id: int
    mined: list[int] | None


def samples(batch: dict[str, list[Any]], pick: Callable[[int, int], int] | None = None) -> Iterator[Sample]:
    """Every expression of ``batch``; of a row with several, only ``pick(ref_id, count)``'s when given."""
    mined_all = batch.get("negative_image_ids")
    for row, ref_id in enumerate(batch["ref_id"]):
        if "sentence" in batch:
            mined = mined_all[row] if mined_all is not None else None
            yield Sample(row, batch["sentence"][row], int(batch["sent_id"][row]), mined)
            continue
        sentences, sent_ids = batch["sentences"][row], batch["sent_ids"][row]
        if not sentences:
            raise ValueError(f"ref {ref_id} has no sentences")
        choices = range(len(sentences)) if pick is None else [pick(int(ref_id), len(sentences))]
        for j in choices:
            mined = mined_all[row][j] if mined_all is not None else None
            yield Sample(row, sentences[j], int(sent_ids[j]), mined)


def sentence_lists(batch: dict[str, list[Any]]) -> list[list[str]]:
    """Each row's sentences as a list, whichever the shape (what mining reads)."""
    return batch["sentences"] if "sentences" in batch else [[s] for s in batch["sentence"]]


def with_candidates(batch: dict[str, list[Any]], mined: list[list[list[int]]]) -> dict[str, list[Any]]:
    """``batch`` with ``negative_image_ids`` (mined per :func:`sentence_lists`) in the batch's shape."""
    return {**batch, "negative_image_ids": mined if "sentences" in batch else [ids[0] for ids in mined]}


def to_columns(drawn: list[dict[str, Any]]) -> dict[str, list[Any]]:
    """Drawn samples (dicts) as a batch of :data:`OUTPUT_COLUMNS`."""
    return {key: [sample[key] for sample in drawn] for key in OUTPUT_COLUMNS}
