"""The NeMo transform: settings bound to a pool and a CLIP model, drawing one sample per expression.

``NeMo.mine(ds)`` adds each sentence's negative candidates; ``ds.map(nemo, batched=True)``
draws the mosaics once; :meth:`NeMo.attach` draws a fresh one at every access during
training, for the epoch set with :meth:`NeMo.set_epoch`.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.context
import os
from collections.abc import Mapping
from dataclasses import fields, replace
from functools import partial
from typing import Any

from datasets import Dataset, Features, List, Value
from datasets import Image as DatasetImage
from datasets.formatting.formatting import LazyBatch
from PIL import Image as PILImage
from transformers import CLIPModel, CLIPProcessor

from nemo_hf.version import __version__
from nemo_hf.data.image_values import open_image
from nemo_hf.mining.clip import ClipSource
from nemo_hf.mining.mine import mine_negatives, require_split
from nemo_hf.mining.report import DifficultyReport
from nemo_hf.mosaic.cells import check_mask_fits
from nemo_hf.mosaic.compose import compose_mosaic, single_image
from nemo_hf.mosaic.layout import grid_layout
from nemo_hf.mosaic.thumbnails import largest_cell
from nemo_hf.nemo.plan import example_rng, pick_sentence, plan_sample
from nemo_hf.nemo.pool import PoolImages
from nemo_hf.nemo.rows import samples, sentence_lists, to_columns, with_candidates
from nemo_hf.nemo.settings import DEFAULT_SIZE, NeMoSettings

__all__ = ["NEMO_VERSION", "NeMo"]

# Part of NeMo's pickled state, so dataset fingerprints change when the method does.
NEMO_VERSION = "1"


class NeMo:
    """Negative-mined mosaics for referring segmentation, bound to a pool and a CLIP model.

    Args:
        pool: the candidate negatives: a dataset with ``image`` and ``image_id`` (usually
            the training split itself). Its distinct image_ids are the candidates.
        clip: a CLIP checkpoint name or path (loaded lazily, default
            ``openai/clip-vit-base-patch16``), or an instantiated ``CLIPModel``.
        processor: the ``CLIPProcessor`` of an instantiated model.
        **settings: any :class:`NeMoSettings` field.

    Pickling keeps the settings, the pool and the CLIP name/revision, never the model,
    so a ``NeMo`` is cheap and stable to fingerprint for ``Dataset.map``.
    """

    def __init__(
        self,
        pool: Dataset,
        clip: str | os.PathLike[str] | CLIPModel | None = None,
        processor: CLIPProcessor | None = None,
        **settings: Any,
    ) -> None:
        known = {f.name for f in fields(NeMoSettings)}
        unknown = sorted(set(settings) - known)
        if unknown:
            raise TypeError(f"unknown NeMo setting(s) {unknown}; valid ones: {sorted(known)}")
        self.settings = NeMoSettings(**settings)
        if self.settings.size is None:  # no model to match: the usual RIS input side
            self.settings = replace(self.settings, size=DEFAULT_SIZE)
        require_split(pool, "pool")
        missing = [c for c in ("image", "image_id") if c not in pool.column_names]
        if missing:
            raise ValueError(f"the pool has no column(s) {missing} (it has {pool.column_names})")
        self.pool = pool
        self._clip = ClipSource.resolve(clip, processor, self.settings.clip_revision)
        self.last_report: DifficultyReport | None = None
        self._shared_epoch = _new_shared_epoch(0)
        self._pool_cache: PoolImages | None = None

    @property
    def _epoch(self) -> int:
        return self._shared_epoch.value

    def mine(
        self,
        ds: Dataset,
        *,
        num_proc: int | None = None,
        report_dir: str | os.PathLike[str] | None = None,
        verbose: bool = True,
    ) -> Dataset:
        """Add ``negative_image_ids``, ``negative_scores`` and ``negative_fallback`` to ``ds``.

        One entry per sentence of each row; see :func:`nemo_hf.mining.mine_negatives`.
        The difficulty report is printed (``verbose``), saved under ``report_dir`` if
        given, and kept in :attr:`last_report`. ``num_proc`` processes decode images.
        """
        s = self.settings
        result = mine_negatives(
            ds, self.pool, self._clip,
            top_k=s.top_k, needed=s.negatives_needed, tau_text=s.tau_text, tau_image=s.tau_image,
            tau_own=s.tau_own, image_batch_size=s.image_batch_size, text_batch_size=s.text_batch_size,
            backend=s.search_backend, device=s.device, num_proc=num_proc, cache_dir=s.cache_dir,
            report_dir=report_dir, verbose=verbose,
        )  # fmt: skip
        self.last_report = result.report
        return result.dataset

    # -- drawing mosaics -------------------------------------------------------------
    @property
    def epoch(self) -> int:
        """The epoch whose mosaics :meth:`__call__` and :meth:`transform` draw."""
        return self._epoch

    def set_epoch(self, epoch: int) -> None:
        """Draw the mosaics of ``epoch`` from now on (call it before each training epoch).

        The epoch lives in shared memory, so DataLoader workers that this process starts
        see the change, ``persistent_workers=True`` included: call it between epochs, before
        the loader's next ``iter()``, when no worker is drawing.
        """
        if not isinstance(epoch, int) or isinstance(epoch, bool) or epoch < 0:
            raise ValueError(f"epoch={epoch!r} must be an integer >= 0")
        self._shared_epoch.value = epoch

    def __call__(self, batch: dict[str, list[Any]], indices: list[int] | None = None) -> dict[str, list[Any]]:
        """``ds.map(nemo, batched=True)``: one row per expression.

        Rows are referred objects (``sentences``/``sent_ids``) or already one per sentence
        (``sentence``/``sent_id``). Rows per object become more rows, one per sentence, and
        ``Dataset.map`` cannot keep an input column beside them (their lengths differ), so
        NeMo drops the batch's columns from what ``map`` merges, as
        ``remove_columns=ds.column_names`` does: out come the columns of
        :data:`~nemo_hf.nemo.rows.OUTPUT_COLUMNS`. Rows per sentence keep the columns NeMo
        does not write, as ``map`` does without ``remove_columns``.

        Without mined candidates in the batch, and with a CLIP model, the batch is mined on
        the fly against the pool's cached embeddings. ``indices`` (``with_indices=True``) are
        accepted but not needed: each sample's generator is seeded by its sentence's
        identity, see :mod:`nemo_hf.nemo.plan`.
        """
        if not isinstance(batch.get("ref_id"), list):
            raise TypeError("NeMo works on batches: use ds.map(nemo, batched=True)")
        candidates = self._with_candidates(batch)
        drawn = to_columns([self._draw(candidates, *sample) for sample in samples(candidates)])
        if "sentence" not in batch and isinstance(batch, LazyBatch):
            # Dataset.map merges what is left of the batch it passed (datasets lets a function
            # remove columns from it in place); a caller's own dict is left alone
            for column in list(batch):
                del batch[column]
        return drawn

    def transform(self, batch: dict[str, list[Any]]) -> dict[str, list[Any]]:
        """For ``set_transform``/``with_transform``: a fresh mosaic per row at every access.

        A row with several ``sentences`` draws one of them (seeded like the mosaic), as RIS
        training code does per epoch. Candidates must have been mined beforehand
        (:meth:`mine`) unless every mosaic is random. For speed, keep ``image`` undecoded
        (see :meth:`attach`): a single image then decodes straight to the output scale.
        """
        if "negative_image_ids" not in batch and self._needs_mining():
            raise self._unmined_error()
        pick = partial(pick_sentence, self.settings.seed, self._epoch)
        return to_columns([self._draw(batch, *sample) for sample in samples(batch, pick)])

    def attach(self, ds: Dataset) -> Dataset:
        """``ds`` with images kept undecoded and :meth:`transform` attached (the fast path).

        With mosaics on, it also makes the pool's shrunk copies (``thumbnail_cells``) here,
        once, so DataLoader workers forked afterwards inherit them instead of each making
        their own. In a distributed run call it under ``accelerator.main_process_first()``.

        >>> import datasets, numpy as np
        >>> from PIL import Image
        >>> rows = datasets.Dataset.from_dict({
        ...     "image": [Image.new("RGB", (40, 30), c) for c in ("red", "green", "blue", "gray")],
        ...     "mask": [Image.fromarray(np.ones((30, 40), bool))] * 4, "sentences": [["the left one"]] * 4,
        ...     "sent_ids": [[0], [1], [2], [3]], "ref_id": [0, 1, 2, 3], "image_id": [10, 11, 12, 13]})
        >>> nemo = NeMo(rows, size=64, mosaic_prob=1.0, random_share=1.0, top_k=3)
        >>> loader_ready = nemo.attach(rows)
        >>> sample = loader_ready[0]
        >>> sample["image"].size, sample["mosaic_kind"], sample["target_cell"] in (0, 2)
        ((64, 64), 'random', True)
        """
        require_split(ds, "dataset")
        s = self.settings
        if s.mosaic_prob > 0 and s.random_share < 1 and "negative_image_ids" not in ds.column_names:
            raise self._unmined_error()  # now, not at the first row a DataLoader draws
        raw = ds
        for column in ("image", "mask"):
            if column in raw.column_names:
                raw = raw.cast_column(column, DatasetImage(decode=False))
        if self.settings.mosaic_prob > 0:
            self._pool_images()  # here, once, rather than in every DataLoader worker
        return raw.with_transform(self.transform)

    @staticmethod
    def _unmined_error() -> ValueError:
        return ValueError(
            "the rows have no negative_image_ids, and drawing at every access (attach, transform) does not "
            "mine: run ds = nemo.mine(ds) first and attach that (random mosaics, random_share=1.0, need no mining)"
        )

    def _needs_mining(self) -> bool:
        s = self.settings
        return s.mosaic_prob > 0 and s.random_share < 1 and self._epoch >= s.warmup_epochs

    def _with_candidates(self, batch: dict[str, list[Any]]) -> dict[str, list[Any]]:
        if "negative_image_ids" in batch or not self._needs_mining():
            return batch
        if self._clip is None:
            raise ValueError("the batch has no negative_image_ids: mine first (nemo.mine(ds)) or give NeMo a CLIP model")
        table = Dataset.from_dict(
            {"image": batch["image"], "image_id": batch["image_id"], "sentences": sentence_lists(batch)},
            features=Features({"image": DatasetImage(), "image_id": Value("int64"),
                               "sentences": List(Value("string"))}),
        )
        return with_candidates(batch, self.mine(table, verbose=False)["negative_image_ids"])

    def _draw(self, batch: dict[str, list[Any]], row: int, sentence: str, sent_id: int,
              mined: list[int] | None) -> dict[str, Any]:
        s, pool = self.settings, self._pool_images()
        ref_id, image_id = int(batch["ref_id"][row]), int(batch["image_id"][row])
        image, mask = batch["image"][row], batch["mask"][row]
        if isinstance(mask, Mapping):  # undecoded (attach): compose_mosaic takes a PIL image or an array
            mask = open_image(mask)
        check_mask_fits(mask, image, f"ref {ref_id} (sent_id {sent_id})")  # the mosaic draws a stand-in image
        plan = plan_sample(
            example_rng(s.seed, self._epoch, ref_id, sent_id), sentence=sentence,
            own_image_id=image_id, mined_ids=mined, pool_ids=pool.ids, grid=s.grid,
            mosaic_prob=s.mosaic_prob, random_share=s.random_share,
            warmup=self._epoch < s.warmup_epochs, position_aware=s.position_aware,
            cross_point_jitter=s.cross_point_jitter,
        )  # fmt: skip
        if plan.kind == "single":
            canvas, out_mask = single_image(image, mask, s.size, s.resize)
        else:
            target, target_size = pool.query(image_id, image, mask)
            canvas, out_mask = compose_mosaic(
                target, mask, [pool.source(i) for i in plan.negative_ids],
                grid_layout(s.grid, s.size, plan.cross_point), plan.target_cell,
                resize=s.resize, blur_negatives=s.blur_negatives, target_size=target_size,
            )  # fmt: skip
        # .map stores the image as datasets encodes a PIL image: PNG at zlib's default level,
        # which cost about 15x the drawing itself. Level 1 (Pillow reads encoderinfo set on
        # the image) is as lossless, about 5x faster to write and some 20% larger.
        canvas.encoderinfo = {"compress_level": 1}
        return {
            "image": canvas,
            "mask": PILImage.fromarray(out_mask),
            "sentence": sentence,
            "ref_id": ref_id,
            "sent_id": sent_id,
            "image_id": image_id,
            "source_image_ids": plan.source_image_ids(image_id),
            "target_cell": plan.target_cell,
            "mosaic_kind": plan.kind,
        }

    def _pool_images(self) -> PoolImages:
        if self._pool_cache is None:  # built once per process (forked workers inherit it), never pickled
            s = self.settings
            cover = largest_cell(s.grid, s.size, s.cross_point_jitter) if s.thumbnail_cells else None
            self._pool_cache = PoolImages(self.pool, cover)
        return self._pool_cache

    def __repr__(self) -> str:
        return f"NeMo(pool={len(self.pool)} rows, clip={self._clip.name!r}, {self.settings})"

    def __getstate__(self) -> dict[str, Any]:
        # What defines the output, and nothing heavy: .map fingerprints this with dill.
        state = {
            "version": (NEMO_VERSION, __version__),
            "settings": self.settings,
            "epoch": self._epoch,
            "pool": self.pool,
            "clip": self._clip,
        }
        if multiprocessing.context.get_spawning_popen() is not None:
            # a spawned DataLoader worker keeps following set_epoch through the shared value
            state["shared_epoch"] = self._shared_epoch
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.settings, self.pool, self._clip = state["settings"], state["pool"], state["clip"]
        shared = state.get("shared_epoch")  # (not `or`: a ctypes value of 0 is falsy)
        self._shared_epoch = shared if shared is not None else _new_shared_epoch(state["epoch"])
        self._pool_cache = None
        self.last_report = None


def _new_shared_epoch(epoch: int) -> Any:
    """An int64 in shared memory: processes forked or spawned later read the writer's value."""
    return multiprocessing.RawValue("q", epoch)
