"""Every parameter of NeMo, validated on construction: :class:`NeMoSettings`.

Values marked *decided here* are this project's choices where the paper publishes none
(``docs/method.md`` keeps the paper's facts and these decisions apart).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

from nemo_hf.mining.search import Backend, resolve_backend
from nemo_hf.mining.selection import require_candidates
from nemo_hf.mosaic import SUPPORTED_GRIDS

__all__ = ["NeMoSettings"]


@dataclass(frozen=True)
class NeMoSettings:
    """All NeMo parameters; invalid values raise ``ValueError``/``TypeError`` naming them.

    Mining (the paper's rule; values *decided here* because the paper does not publish
    them):

    - ``tau_image`` (0.9): drop a candidate whose CLIP image embedding has cosine > τ
      with the query image — near-duplicates and the same scene, which may hold an
      object the expression also fits (the released code's image→image filter, which is
      not its default setting). 0.9 is high enough that only such images go.
    - ``tau_text`` (None, off): drop a candidate whose text→image cosine exceeds τ. CLIP
      ViT-B cosines between a caption and a matching photo are ~0.3, so useful values
      are in 0.25–0.35. It is the filter of the released code's default setting and of
      the project page; off here because a useful value depends on the CLIP's scale.
    - ``tau_own`` (None, off): drop a candidate whose text→image cosine exceeds the
      sentence's own image's by more than τ (*decided here*, not in the paper). With 0
      it drops every image the CLIP prefers to the true one — the likeliest unlabelled
      positives — whatever the CLIP's cosine scale; negative values drop near-ties too.
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
      or "auto" (:func:`~nemo_hf.mining.search.resolve_backend`: "exact").
    - ``device`` (None): where CLIP and the search run; default this process's accelerator.
    - ``cache_dir`` (None): embedding/selection cache; default ``$HF_HOME/nemo_hf/mining``.

    >>> NeMoSettings(grid=3).negatives_needed
    8
    >>> NeMoSettings(top_k=2)
    Traceback (most recent call last):
    ...
    ValueError: top_k=2 keeps only 2 candidate negatives, but a 2x2 mosaic needs 3: raise top_k or use a smaller grid
    """

    tau_image: float | None = 0.9
    tau_text: float | None = None
    tau_own: float | None = None
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
    search_backend: Backend = "auto"
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
        if self.grid not in SUPPORTED_GRIDS or isinstance(self.grid, bool):
            raise ValueError(f"grid={self.grid!r} must be 2 (2x2 mosaic) or 3 (3x3)")
        require_candidates(self.top_k, self.negatives_needed, f"top_k={self.top_k} keeps",
                           "raise top_k or use a smaller grid")
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
        if self.tau_own is not None:
            _check_number("tau_own", self.tau_own)
            if not -2.0 <= self.tau_own <= 2.0:
                raise ValueError(f"tau_own={self.tau_own!r} is a difference of cosines, in [-2, 2] (or None for off)")
        resolve_backend(self.search_backend)
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
