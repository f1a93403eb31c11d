"""What the explorer shows, without a page: one expression's ranked candidates, the τ/K cut, its mosaics.

A :class:`MiningExplorer` holds one split (its own pool, as NeMo mines it) and the CLIP
embeddings mining ranks with — :func:`~nemo_hf.mining.mine.mining_embeddings`, from the same
cache entries as ``nemo.mine`` and ``mine_negatives.py``, so a split mined before is not
embedded again, and moving a slider never embeds anything. For any expression and any
:class:`~nemo_hf.nemo.settings.NeMoSettings` (τ_text, τ_image, τ_own, K, grid, seed):

- :meth:`MiningExplorer.ranking` — every candidate image ranked by text→image cosine, with its
  image→image cosine to the expression's own image, which rule drops it (own image, above
  τ_text, above its own image's score + τ_own, above τ_image), where K cuts, which are kept
  and whether the list fell back to the least similar. The kept list is
  :func:`~nemo_hf.mining.selection.select_negatives`' own answer for that sentence, the
  exact rule mining applies;
- :meth:`MiningExplorer.mosaics` — the mosaics training would draw from that list in
  successive epochs (:func:`~nemo_hf.nemo.plan.plan_sample` with the per-sentence seeded
  generator, then :func:`~nemo_hf.mosaic.compose.compose_mosaic`), the target cell outlined
  in green.

Where the split is synthetic (its rows carry each sentence's ``meaning`` and each image's
``scene_objects``), a candidate is marked when it holds an object the expression fits in
its own picture, and a mosaic cell is outlined in red when an object there fits the
expression on the whole canvas (:func:`~nemo_hf.nemo.audit.false_negative_cells`): a wrong
label, the risk τ guards against.

Only the images shown are decoded (each once, then kept small): a row of a big pool costs
its own pictures, not the pool's.

>>> import tempfile
>>> from nemo_hf.synthetic import make_refer_dataset
>>> from nemo_hf.data.load import load_refcoco
>>> tree = make_refer_dataset(tempfile.mkdtemp(), num_images=12, seed=0, datasets=("refcoco",))
>>> train = load_refcoco("refcoco_unc", tree.root, tree.image_dir, split="train", cache_dir=tempfile.mkdtemp())
>>> explorer = MiningExplorer(train, clip="nemo-hf/synthetic-clip", cache_dir=tempfile.mkdtemp())
>>> ranking = explorer.ranking(0, NeMoSettings(top_k=4))
>>> len(ranking.kept), ranking.candidates[0].rank, ranking.synthetic
(4, 1, True)
>>> [m.image.size for m in explorer.mosaics(0, NeMoSettings(top_k=4), count=2, size=96)]
[(96, 96), (96, 96)]
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from datasets import Dataset
from datasets import Image as DatasetImage
from PIL import Image, ImageDraw

from nemo_hf.data.image_values import open_image
from nemo_hf.data.meaning import SceneObject, fits
from nemo_hf.mining.mine import MiningEmbeddings, mining_embeddings
from nemo_hf.mining.selection import select_negatives
from nemo_hf.mosaic.compose import compose_mosaic
from nemo_hf.mosaic.layout import grid_layout
from nemo_hf.nemo.audit import false_negative_cells
from nemo_hf.nemo.plan import example_rng, plan_sample
from nemo_hf.nemo.settings import NeMoSettings

__all__ = ["Candidate", "DrawnMosaic", "MiningExplorer", "Ranking"]

OWN, ABOVE_TEXT, ABOVE_OWN, ABOVE_IMAGE = "own image", "above τ_text", "above own + τ_own", "above τ_image"
KEPT, BEYOND_K, FALLBACK = "kept (top K)", "beyond K", "fallback (least similar)"
_THUMBNAIL = 160
_GREEN, _RED = (40, 200, 60), (230, 30, 30)


@dataclass(frozen=True)
class Candidate:
    """One pool image in a sentence's ranking.

    ``rank`` is its place by text→image cosine among all pool images (1 = most similar;
    ties: smaller image_id first); ``status`` says what the rule made of it; ``fits`` whether
    it holds an object the expression fits in its own picture (None: no ground truth).
    """

    rank: int
    image_id: int
    text_score: float
    image_score: float
    status: str
    fits: bool | None


@dataclass(frozen=True)
class Ranking:
    """A sentence's candidates under some settings (module docstring)."""

    index: int
    sentence: str
    image_id: int
    ref_id: int | None
    sent_id: int | None
    own_text_score: float
    candidates: list[Candidate]  # the ranks shown: the top, every kept one, and a few after the K cut
    kept: list[int]  # the image_ids mining keeps, best first
    fallback: bool
    counts: dict[str, int]  # per status, over the whole pool
    k_cut: float | None  # the text→image cosine of the last kept candidate
    synthetic: bool


@dataclass(frozen=True)
class DrawnMosaic:
    """One mosaic: the picture (marks drawn), its cells' image_ids, the target's cell, the cells with a wrong label."""

    image: Image.Image
    source_image_ids: list[int]
    target_cell: int
    wrong_cells: list[int] | None  # None: no ground truth to judge by
    epoch: int


class MiningExplorer:
    """One split, its CLIP embeddings and its pictures, for the explorer (see the module docstring).

    Args:
        ds: the builder's rows, one per referred object (``image``, ``image_id``, ``mask``,
            ``sentences``; ``meaning`` and ``scene_objects`` on synthetic data).
        clip: the CLIP mining ranks with (name, folder or shipped name).
        pool: the candidate negatives (default: ``ds`` itself, as NeMo mines a training split).
        cache_dir: the mining cache (default: mining's own, ``$HF_HOME/nemo_hf/mining``).
    """

    def __init__(self, ds: Dataset, *, clip: str = "nemo-hf/synthetic-clip", pool: Dataset | None = None,
                 cache_dir: str | None = None, progress: bool = False) -> None:
        self.ds = ds
        self.pool = ds if pool is None else pool
        self.clip = clip
        self.embeddings: MiningEmbeddings = mining_embeddings(ds, self.pool, clip, cache_dir=cache_dir,
                                                              progress=progress)
        self._pool_images = self.pool.select_columns(["image"]).cast_column("image", DatasetImage(decode=False))
        self._row_images = ds.select_columns(["image", "mask"]).cast_column(
            "image", DatasetImage(decode=False)).cast_column("mask", DatasetImage(decode=False))
        self._pool_row = dict(zip(self.embeddings.pool_ids.tolist(), self.embeddings.pool_rows.tolist()))
        self._column = {c: c in ds.column_names for c in ("meaning", "scene_objects", "ref_id", "sent_ids")}
        self._thumbnails: OrderedDict[int, Image.Image] = OrderedDict()
        # column views made once: a select_columns per row read would copy the dataset's metadata each time
        ids = [c for c in ("ref_id", "sent_ids") if self._column[c]]
        self._ids_view = ds.select_columns(ids) if ids else None
        self._synthetic = self._column["meaning"] and self._column["scene_objects"]
        self._meaning_view = ds.select_columns(["meaning"]) if self._synthetic else None
        self._frame_view = (self.pool.select_columns(["scene_objects", "width", "height"])
                            if self._synthetic and "scene_objects" in self.pool.column_names else None)
        self._frames: dict[int, tuple[tuple[SceneObject, ...], tuple[float, float]]] = {}

    # -- sentences ---------------------------------------------------------------------------------------------------
    @property
    def sentences(self) -> list[str]:
        """Every expression of the split, in row order: what a sentence index points into."""
        return self.embeddings.texts

    def find(self, text: str, limit: int = 50) -> list[int]:
        """Indices of the sentences containing ``text`` (case-insensitive), at most ``limit``.

        An empty ``text`` gives the first ``limit`` sentences.
        """
        needle = text.strip().lower()
        found = [i for i, sentence in enumerate(self.sentences) if needle in sentence.lower()] if needle else \
            list(range(len(self.sentences)))
        return found[:limit]

    def _check_index(self, index: int) -> int:
        if not 0 <= int(index) < len(self.sentences):
            raise IndexError(f"sentence {index} does not exist: the split has {len(self.sentences)} "
                             f"(0 … {len(self.sentences) - 1})")
        return int(index)

    # -- ranking -----------------------------------------------------------------------------------------------------
    def ranking(self, index: int, settings: NeMoSettings, show: int = 24, after_cut: int = 3) -> Ranking:
        """Sentence ``index``'s candidates under ``settings`` (its τs, K and grid).

        ``candidates`` lists the first ``show`` ranks, every kept candidate and the
        ``after_cut`` survivors after the last kept one; ``counts`` covers the whole pool.
        """
        i = self._check_index(index)
        e = self.embeddings
        query = e.query[e.query_index[i]]
        text_scores = e.pool @ e.text[i]
        image_scores = e.pool @ query
        own_col = int(e.own_col[i])
        own_score = float(e.text[i] @ query)
        selection = select_negatives(
            e.text[i:i + 1], e.query, e.query_index[i:i + 1], e.pool, e.own_col[i:i + 1],
            top_k=settings.top_k, needed=settings.negatives_needed, tau_text=settings.tau_text,
            tau_image=settings.tau_image, tau_own=settings.tau_own, stats_sample=0, device="cpu",
        )
        kept_cols = [int(c) for c in selection.cols[0] if c >= 0]
        fallback = bool(selection.fallback[0])
        order = np.lexsort((np.arange(len(text_scores)), -text_scores.astype(np.float64)))
        statuses = self._statuses(order, text_scores, image_scores, own_col, own_score, settings, kept_cols)
        kept_set = set(kept_cols)
        last_kept = max((rank for rank, col in enumerate(order) if int(col) in kept_set), default=-1)
        survivors_after = [rank for rank in range(last_kept + 1, len(order)) if statuses[rank] == BEYOND_K]
        shown = sorted(set(range(min(show, len(order))))
                       | {rank for rank, col in enumerate(order) if int(col) in kept_set}
                       | set(survivors_after[:after_cut]))
        meaning = self._meaning(i)
        candidates = [
            Candidate(rank + 1, int(e.pool_ids[order[rank]]), float(text_scores[order[rank]]),
                      float(image_scores[order[rank]]), statuses[rank],
                      None if meaning is None else self._fits_alone(meaning, int(e.pool_ids[order[rank]])))
            for rank in shown
        ]
        counts: dict[str, int] = {}
        for status in statuses:
            counts[status] = counts.get(status, 0) + 1
        ref_id, sent_id = self._ids(i)
        kept_scores = [float(text_scores[c]) for c in kept_cols if not fallback]
        return Ranking(i, self.sentences[i], int(e.image_ids[i]), ref_id, sent_id, own_score, candidates,
                       [int(e.pool_ids[c]) for c in kept_cols], fallback, counts,
                       min(kept_scores) if kept_scores else None, meaning is not None)

    @staticmethod
    def _statuses(order: np.ndarray, text_scores: np.ndarray, image_scores: np.ndarray, own_col: int,
                  own_score: float, settings: NeMoSettings, kept_cols: Sequence[int]) -> list[str]:
        """What the rule makes of each candidate, in ranking order (the rule of nemo_hf.mining.selection)."""
        kept = set(kept_cols)
        statuses = []
        for col in order.tolist():
            text, image = float(text_scores[col]), float(image_scores[col])
            if col == own_col:
                status = OWN
            elif settings.tau_text is not None and text > settings.tau_text:
                status = ABOVE_TEXT
            elif settings.tau_own is not None and text > own_score + settings.tau_own:
                status = ABOVE_OWN
            elif settings.tau_image is not None and image > settings.tau_image:
                status = ABOVE_IMAGE
            else:
                status = BEYOND_K
            if col in kept:  # a survivor is kept by rank; anything else only by the least-similar fill
                status = KEPT if status == BEYOND_K else FALLBACK
            statuses.append(status)
        return statuses

    # -- mosaics -----------------------------------------------------------------------------------------------------
    def mosaics(self, index: int, settings: NeMoSettings, count: int = 4, size: int = 256) -> list[DrawnMosaic]:
        """The mosaics of epochs 0 … ``count`` - 1 for sentence ``index`` (every sample a mined mosaic).

        Drawn as training draws them: the plan from the generator seeded by ``(seed, epoch,
        ref_id, sent_id)``, negatives from the kept list without replacement, the query's
        cell by its position words when ``position_aware``; cells of ``size / grid`` pixels.
        """
        i = self._check_index(index)
        ranking = self.ranking(i, settings, show=0, after_cut=0)
        row = int(self.embeddings.row_of_sentence[i])
        ref_id, sent_id = self._ids(i)
        image_value, mask_value = self._row_images[row]["image"], self._row_images[row]["mask"]
        image, mask = open_image(image_value), np.asarray(open_image(mask_value)) > 0
        meaning = self._meaning(i)
        drawn = []
        for epoch in range(count):
            plan = plan_sample(
                example_rng(settings.seed, epoch, ref_id if ref_id is not None else row, sent_id if sent_id is not None
                            else i),
                sentence=self.sentences[i], own_image_id=ranking.image_id, mined_ids=ranking.kept,
                pool_ids=self.embeddings.pool_ids, grid=settings.grid, mosaic_prob=1.0, random_share=0.0,
                warmup=False, position_aware=settings.position_aware, cross_point_jitter=0.0,
            )
            boxes = grid_layout(settings.grid, size)
            canvas, _ = compose_mosaic(image, mask, [self._pool_value(n) for n in plan.negative_ids], boxes,
                                       plan.target_cell, resize=settings.resize)
            ids = plan.source_image_ids(ranking.image_id)
            wrong = None
            if meaning is not None:
                frames = [self._frame(image_id) for image_id in ids]
                wrong = false_negative_cells(meaning, frames, boxes, plan.target_cell, size=size,
                                             resize=settings.resize)
            drawn.append(DrawnMosaic(_marked(canvas, boxes, plan.target_cell, wrong or []), ids, plan.target_cell,
                                     wrong, epoch))
        return drawn

    # -- pictures ----------------------------------------------------------------------------------------------------
    def query_image(self, index: int) -> Image.Image:
        """Sentence ``index``'s own picture with its target outlined (decodes that one row)."""
        from nemo_hf.viz import overlay_mask

        row = int(self.embeddings.row_of_sentence[self._check_index(index)])
        values = self._row_images[row]
        image = open_image(values["image"]).convert("RGB")
        return overlay_mask(image, np.asarray(open_image(values["mask"])) > 0, dim=0.25)

    def thumbnail(self, image_id: int) -> Image.Image:
        """A pool image shrunk to at most 160 pixels a side: decoded on first use, then kept (the last 512)."""
        if image_id in self._thumbnails:
            self._thumbnails.move_to_end(image_id)
            return self._thumbnails[image_id]
        picture = open_image(self._pool_value(image_id)).convert("RGB")
        picture.thumbnail((_THUMBNAIL, _THUMBNAIL))
        self._thumbnails[image_id] = picture
        if len(self._thumbnails) > 512:
            self._thumbnails.popitem(last=False)
        return picture

    # -- ground truth ------------------------------------------------------------------------------------------------
    def _pool_value(self, image_id: int) -> Any:
        return self._pool_images[self._pool_row[int(image_id)]]["image"]

    def _ids(self, i: int) -> tuple[int | None, int | None]:
        row = int(self.embeddings.row_of_sentence[i])
        values = self._ids_view[row] if self._ids_view is not None else {}
        ref_id = values.get("ref_id")
        sent_ids = values.get("sent_ids")
        sent_id = sent_ids[int(self.embeddings.sentence_in_row[i])] if sent_ids else None
        return (None if ref_id is None else int(ref_id)), (None if sent_id is None else int(sent_id))

    def _meaning(self, i: int) -> dict[str, Any] | None:
        if self._meaning_view is None or self._frame_view is None:
            return None
        row = int(self.embeddings.row_of_sentence[i])
        meanings = self._meaning_view[row]["meaning"]
        text = meanings[int(self.embeddings.sentence_in_row[i])] if meanings else None
        return None if text is None else json.loads(text)

    def _frame(self, image_id: int) -> tuple[tuple[SceneObject, ...], tuple[float, float]]:
        """An image's objects and size, read from the first pool row holding it (once)."""
        if image_id not in self._frames:
            assert self._frame_view is not None
            row = self._frame_view[self._pool_row[int(image_id)]]
            objects = row["scene_objects"] or {"category": [], "colour": [], "size": [], "x": [], "y": []}
            fields = ("category", "colour", "size", "x", "y")
            self._frames[image_id] = (tuple(SceneObject(*values) for values in zip(*(objects[f] for f in fields))),
                                      (float(row["width"]), float(row["height"])))
        return self._frames[image_id]

    def _fits_alone(self, meaning: dict[str, Any], image_id: int) -> bool:
        objects, frame = self._frame(image_id)
        return bool(fits(meaning, list(objects), frame))


def _marked(canvas: Image.Image, boxes: Sequence[Any], target_cell: int, wrong: Sequence[int]) -> Image.Image:
    """``canvas`` with the target cell outlined in green and wrong-label cells in red."""
    marked = canvas.convert("RGB").copy()
    draw = ImageDraw.Draw(marked)
    width = max(2, marked.width // 100)
    for cell, colour in [(target_cell, _GREEN), *[(c, _RED) for c in wrong]]:
        box = boxes[cell]
        draw.rectangle((box.left, box.top, box.left + box.width - 1, box.top + box.height - 1), outline=colour,
                       width=width)
    return marked
