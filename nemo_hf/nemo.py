"""NeMo: negative-mined mosaic augmentation — settings and the mining entry point.

:class:`NeMoSettings` holds every parameter of the method, validated on construction.
:class:`NeMo` binds settings to a pool of candidate images and a CLIP model;
``NeMo.mine(ds)`` adds per-sentence negative candidates to a dataset.

What the paper fixes and what this project chose (see ``NEMO_METHOD.md``): the paper
ranks candidates by CLIP text→image similarity, drops the too-similar ones with a
threshold τ, keeps the top K and draws the mosaic's negatives from those; its τ, K and
CLIP variant are tuned per dataset and not published. Every default below marked
*decided here* is this project's choice.

    >>> from datasets import Dataset, Features, Image, List, Value
    >>> from PIL import Image as PILImage
    >>> from nemo_hf.testing.tiny_models import tiny_clip
    >>> colours = ["red", "green", "blue", "yellow", "white", "black"]
    >>> pool = Dataset.from_dict(
    ...     {"image": [PILImage.new("RGB", (48, 32), c) for c in colours],
    ...      "image_id": list(range(6)), "sentences": [[f"the {c} one"] for c in colours]},
    ...     features=Features({"image": Image(), "image_id": Value("int64"),
    ...                        "sentences": List(Value("string"))}))
    >>> import tempfile
    >>> nemo = NeMo(pool, *tiny_clip(0), top_k=4, tau_image=None, cache_dir=tempfile.mkdtemp())
    >>> mined = nemo.mine(pool, verbose=False)
    >>> [len(ids) for ids in mined[0]["negative_image_ids"]]
    [4]
"""

from __future__ import annotations

import io
import multiprocessing
import multiprocessing.context
import os
from dataclasses import asdict, dataclass, fields
from typing import Any, Literal

import numpy as np
from datasets import Dataset, Features, List, Value
from datasets import Image as DatasetImage
from PIL import Image as PILImage
from transformers import CLIPModel, CLIPProcessor

from nemo_hf import __version__

from nemo_hf.mining.clip import ClipSource
from nemo_hf.mining.mine import mine_negatives
from nemo_hf.mining.report import DifficultyReport
from nemo_hf.mosaic import compose_mosaic, grid_layout, single_image
from nemo_hf.mosaic.thumbnails import largest_cell, shrink_pool
from nemo_hf.plan import example_rng, plan_sample

__all__ = ["NeMo", "NeMoSettings"]

# Part of NeMo's pickled state, so dataset fingerprints change when the method does.
NEMO_VERSION = "1"
OUTPUT_COLUMNS = ("image", "mask", "sentence", "ref_id", "sent_id", "image_id", "source_image_ids",
                  "target_cell", "mosaic_kind")


@dataclass(frozen=True)
class NeMoSettings:
    """All NeMo parameters; invalid values raise ``ValueError``/``TypeError`` naming them.

    Mining (the paper's rule; values *decided here* because the paper does not publish
    them):

    - ``tau_image`` (0.9): drop a candidate whose CLIP image embedding has cosine > τ
      with the query image — near-duplicates and the same scene, which may hold an
      object the expression also fits (the released code's default path filters on
      image→image similarity). 0.9 is high enough that only such images go.
    - ``tau_text`` (None, off): drop a candidate whose text→image cosine exceeds τ. CLIP
      ViT-B cosines between a caption and a matching photo are ~0.3, so useful values
      are in 0.25–0.35; off by default as the released code's default path does.
    - ``top_k`` (20): keep the K best-ranked survivors; the mosaic draws its negatives
      from them. 20 keeps negatives hard (about the top 0.1% of a RefCOCO-sized pool)
      while leaving many distinct triples. Must be at least ``grid**2 - 1``.

    Mosaic (used by the transform):

    - ``grid`` (2): 2×2 (3 negatives) as in the paper; 3 for the 3×3 ablation (8).
    - ``size`` (480): side of the output image, the usual RIS input side.
    - ``mosaic_prob`` (0.5): chance a training sample becomes a mosaic (the one value
      seen, from an author prototype).
    - ``random_share`` (0.0): share of mosaics whose negatives are random pool images
      instead of mined ones (*decided here*: all mined).
    - ``warmup_epochs`` (0): epochs of random-only mosaics before mined ones.
    - ``position_aware`` (True): place the query image according to whole-word
      position terms (left/right/top/bottom…) in the expression.
    - ``cross_point_jitter`` (0.0): how far, as a fraction of the side, the grid's cross
      point may move from the centre (0: equal cells, as in the paper). Below 0.5.
    - ``resize`` ("stretch"): cells stretched without keeping aspect ratio (as in the
      paper) or "letterbox".
    - ``blur_negatives`` (False): blur negative cells (an ablation of the code).
    - ``thumbnail_cells`` (True): draw every mosaic cell from a copy of its pool image
      shrunk once to the largest cell the layout can give it (``nemo_hf.mosaic.thumbnails``;
      made on first use, cached beside the pool). A cell then decodes several times
      faster and differs from one drawn from the original by one or two grey levels; the
      query's mask still comes from the original at full resolution. Single-image samples
      (and a query image absent from the pool) are drawn from the original.
    - ``seed`` (0): base of the per-(seed, epoch, index) generators.

    Mining mechanics (do not change which negatives are chosen, except ``search_backend``
    up to exact score ties):

    - ``clip_revision``: Hub revision of a CLIP checkpoint given by name.
    - ``image_batch_size`` (64), ``text_batch_size`` (256): CLIP batch sizes.
    - ``search_backend`` ("auto"): "exact" (torch, chunked), "faiss" (flat FAISS index)
      or "auto" (currently "exact", which was the faster on the benchmark machine).
    - ``device`` (None): where CLIP and the search run; default this process's accelerator.
    - ``cache_dir`` (None): embedding/selection cache; default ``$HF_HOME/nemo_hf/mining``.

    >>> NeMoSettings(grid=3).negatives_needed
    8
    >>> NeMoSettings(top_k=2)
    Traceback (most recent call last):
    ...
    ValueError: top_k=2 is smaller than the 3 negatives a 2x2 mosaic needs
    """

    tau_image: float | None = 0.9
    tau_text: float | None = None
    top_k: int = 20
    grid: int = 2
    size: int = 480
    mosaic_prob: float = 0.5
    random_share: float = 0.0
    warmup_epochs: int = 0
    position_aware: bool = True
    cross_point_jitter: float = 0.0
    resize: Literal["stretch", "letterbox"] = "stretch"
    blur_negatives: bool = False
    thumbnail_cells: bool = True
    seed: int = 0
    clip_revision: str | None = None
    image_batch_size: int = 64
    text_batch_size: int = 256
    search_backend: Literal["auto", "exact", "faiss"] = "auto"
    device: str | None = None
    cache_dir: str | None = None

    def __post_init__(self) -> None:
        for name in ("tau_image", "tau_text"):
            value = getattr(self, name)
            if value is not None:
                _check_number(name, value)
                if not -1.0 <= value <= 1.0:
                    raise ValueError(f"{name}={value!r} is not a cosine similarity in [-1, 1] (or None for off)")
        for name, low in (("top_k", 1), ("size", 1), ("warmup_epochs", 0), ("seed", 0),
                          ("image_batch_size", 1), ("text_batch_size", 1)):  # fmt: skip
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise ValueError(f"{name}={value!r} must be an integer >= {low}")
        if self.grid not in (2, 3) or isinstance(self.grid, bool):
            raise ValueError(f"grid={self.grid!r} must be 2 (2x2 mosaic) or 3 (3x3)")
        if self.top_k < self.negatives_needed:
            raise ValueError(
                f"top_k={self.top_k} is smaller than the {self.negatives_needed} negatives "
                f"a {self.grid}x{self.grid} mosaic needs"
            )
        if self.size < 2 * self.grid:
            raise ValueError(f"size={self.size} is too small for a {self.grid}x{self.grid} mosaic")
        for name in ("mosaic_prob", "random_share"):
            value = getattr(self, name)
            _check_number(name, value)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name}={value!r} must be a probability in [0, 1]")
        _check_number("cross_point_jitter", self.cross_point_jitter)
        if not 0.0 <= self.cross_point_jitter < 0.5:
            raise ValueError(f"cross_point_jitter={self.cross_point_jitter!r} must be in [0, 0.5)")
        for name in ("position_aware", "blur_negatives", "thumbnail_cells"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"{name}={getattr(self, name)!r} must be True or False")
        if self.resize not in ("stretch", "letterbox"):
            raise ValueError(f"resize={self.resize!r} must be 'stretch' or 'letterbox'")
        if self.search_backend not in ("auto", "exact", "faiss"):
            raise ValueError(f"search_backend={self.search_backend!r} must be 'auto', 'exact' or 'faiss'")
        for name in ("clip_revision", "device", "cache_dir"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, str):
                raise TypeError(f"{name}={value!r} must be a string or None")

    @property
    def negatives_needed(self) -> int:
        """Negatives per mosaic: ``grid * grid - 1``."""
        return self.grid * self.grid - 1

    def to_dict(self) -> dict[str, Any]:
        """The settings as a plain dict (JSON-ready)."""
        return asdict(self)


def _check_number(name: str, value: object) -> None:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise TypeError(f"{name}={value!r} must be a number")


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
        if not isinstance(pool, Dataset):
            raise TypeError(f"pool must be a datasets.Dataset, got {type(pool).__name__}")
        missing = [c for c in ("image", "image_id") if c not in pool.column_names]
        if missing:
            raise ValueError(f"the pool has no column(s) {missing} (it has {pool.column_names})")
        self.pool = pool
        self._clip = ClipSource.resolve(clip, processor, self.settings.clip_revision)
        self.last_report: DifficultyReport | None = None
        self._shared_epoch = _new_shared_epoch(0)
        self._pool_cache: _PoolImages | None = None

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
            image_batch_size=s.image_batch_size, text_batch_size=s.text_batch_size,
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
        """``ds.map(nemo, batched=True, remove_columns=ds.column_names)``: one row per expression.

        Rows are referred objects (``sentences``/``sent_ids``) or already one per sentence
        (``sentence``/``sent_id``). Without mined candidates in the batch, and with a CLIP
        model, the batch is mined on the fly against the pool's cached embeddings.
        ``indices`` (``with_indices=True``) are accepted but not needed: each sample's
        generator is seeded by its sentence's identity, see :mod:`nemo_hf.plan`.
        """
        if not isinstance(batch.get("ref_id"), list):
            raise TypeError("NeMo works on batches: use ds.map(nemo, batched=True, remove_columns=ds.column_names)")
        batch = self._with_candidates(batch)
        samples = [
            self._draw(batch, row, sentence, sent_id, mined)
            for row, sentence, sent_id, mined in self._sentences(batch, pick_one=False)
        ]
        return _columns(samples)

    def transform(self, batch: dict[str, list[Any]]) -> dict[str, list[Any]]:
        """For ``set_transform``/``with_transform``: a fresh mosaic per row at every access.

        A row with several ``sentences`` draws one of them (seeded like the mosaic), as RIS
        training code does per epoch. Candidates must have been mined beforehand
        (:meth:`mine`) unless every mosaic is random. For speed, keep ``image`` undecoded
        (see :meth:`attach`): a single image then decodes straight to the output scale.
        """
        samples = [
            self._draw(batch, row, sentence, sent_id, mined)
            for row, sentence, sent_id, mined in self._sentences(batch, pick_one=True)
        ]
        return _columns(samples)

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
        raw = ds
        for column in ("image", "mask"):
            if column in raw.column_names:
                raw = raw.cast_column(column, DatasetImage(decode=False))
        if self.settings.mosaic_prob > 0:
            self._pool_images()  # here, once, rather than in every DataLoader worker
        return raw.with_transform(self.transform)

    def _needs_mining(self) -> bool:
        s = self.settings
        return s.mosaic_prob > 0 and s.random_share < 1 and self._epoch >= s.warmup_epochs

    def _with_candidates(self, batch: dict[str, list[Any]]) -> dict[str, list[Any]]:
        if "negative_image_ids" in batch or not self._needs_mining():
            return batch
        if self._clip is None:
            raise ValueError("the batch has no negative_image_ids: mine first (nemo.mine(ds)) or give NeMo a CLIP model")
        sentences = batch["sentences"] if "sentences" in batch else [[s] for s in batch["sentence"]]
        table = Dataset.from_dict(
            {"image": batch["image"], "image_id": batch["image_id"], "sentences": sentences},
            features=Features({"image": DatasetImage(), "image_id": Value("int64"),
                               "sentences": List(Value("string"))}),
        )
        mined = self.mine(table, verbose=False)
        ids = mined["negative_image_ids"]
        return {**batch, "negative_image_ids": ids if "sentences" in batch else [i[0] for i in ids]}

    def _sentences(self, batch: dict[str, list[Any]], pick_one: bool):
        """(row, sentence, sent_id, mined ids) for each sample the batch yields."""
        mined_all = batch.get("negative_image_ids")
        for row, ref_id in enumerate(batch["ref_id"]):
            if "sentence" in batch:
                mined = mined_all[row] if mined_all is not None else None
                yield row, batch["sentence"][row], int(batch["sent_id"][row]), mined
                continue
            sentences, sent_ids = batch["sentences"][row], batch["sent_ids"][row]
            if not sentences:
                raise ValueError(f"ref {ref_id} has no sentences")
            choices = range(len(sentences))
            if pick_one:
                rng = example_rng(self.settings.seed, self._epoch, int(ref_id), -1)
                choices = [int(rng.integers(len(sentences)))]
            for j in choices:
                mined = mined_all[row][j] if mined_all is not None else None
                yield row, sentences[j], int(sent_ids[j]), mined

    def _draw(self, batch: dict[str, list[Any]], row: int, sentence: str, sent_id: int,
              mined: list[int] | None) -> dict[str, Any]:
        s, pool = self.settings, self._pool_images()
        ref_id, image_id = int(batch["ref_id"][row]), int(batch["image_id"][row])
        image, mask = batch["image"][row], _as_mask(batch["mask"][row])
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
            target, target_size = image, None
            if pool.shrunk and image_id in pool:  # the copy, laid out as the original the mask fits
                target, target_size = pool.source(image_id), _mask_size(mask)
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

    def _pool_images(self) -> _PoolImages:
        if self._pool_cache is None:  # built once per process (forked workers inherit it), never pickled
            s = self.settings
            cover = largest_cell(s.grid, s.size, s.cross_point_jitter) if s.thumbnail_cells else None
            self._pool_cache = _PoolImages(self.pool, cover)
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


class _PoolImages:
    """Undecoded pool images by image_id, for drawing a mosaic's cells.

    With ``cover`` (a cell's ``(width, height)``), each distinct image is a copy shrunk to
    cover it (:func:`~nemo_hf.mosaic.thumbnails.shrink_pool`).
    """

    def __init__(self, pool: Dataset, cover: tuple[int, int] | None = None):
        images = pool.select_columns(["image"]).cast_column("image", DatasetImage(decode=False))
        all_ids = np.asarray(pool["image_id"], dtype=np.int64)
        self.ids, first_rows = np.unique(all_ids, return_index=True)
        self.shrunk = cover is not None
        if cover is None:
            self._images, rows = images, first_rows
        else:
            self._images, rows = shrink_pool(images.select(first_rows), cover), np.arange(len(first_rows))
        self._row = dict(zip(self.ids.tolist(), rows.tolist()))

    def __contains__(self, image_id: int) -> bool:
        return image_id in self._row

    def source(self, image_id: int) -> dict[str, Any]:
        return self._images[self._row[image_id]]["image"]


def _as_mask(value: Any) -> Any:
    """A mask as ``compose_mosaic`` takes it; undecoded ``{"bytes", "path"}`` values are opened."""
    if isinstance(value, dict):
        return PILImage.open(io.BytesIO(value["bytes"]) if value.get("bytes") else value["path"])
    return value


def _mask_size(mask: Any) -> tuple[int, int]:
    """``(width, height)`` of a mask as ``_as_mask`` returns it (a PIL image or an array)."""
    if isinstance(mask, PILImage.Image):
        return mask.size
    height, width = np.shape(mask)[:2]
    return int(width), int(height)


def _columns(samples: list[dict[str, Any]]) -> dict[str, list[Any]]:
    return {key: [sample[key] for sample in samples] for key in OUTPUT_COLUMNS}
