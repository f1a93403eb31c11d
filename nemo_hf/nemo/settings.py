"""Every parameter of NeMo, declared, documented and validated once: :class:`NeMoSettings`.

Each field's help text (its ``metadata["help"]``) is what ``training/train.py --help``
prints, what model and dataset cards quote, and the documentation of the knob; its
``metadata["group"]`` says what it acts on:

- ``"mining"`` — which negatives are chosen (the paper's τ / top-K rule);
- ``"mosaic"`` — how the samples are drawn from them;
- ``"mechanics"`` — how the work is done (batch sizes, device, cache): never what is chosen,
  except ``search_backend`` up to exact score ties.

Values marked *decided here* are this project's choices where the paper publishes none
(``docs/method.md`` keeps the paper's facts and these decisions apart).

    >>> NeMoSettings(grid=3).negatives_needed
    8
    >>> [f.name for f in settings_in_group("mining")][:4]
    ['tau_image', 'tau_text', 'tau_own', 'top_k']
    >>> NeMoSettings(top_k=2)
    Traceback (most recent call last):
    ...
    ValueError: top_k=2 keeps only 2 candidate negatives, but a 2x2 mosaic needs 3: raise top_k or use a smaller grid
"""

from __future__ import annotations

from dataclasses import Field, asdict, dataclass, field, fields
from typing import Any, Literal

from nemo_hf.mining.search import Backend, resolve_backend
from nemo_hf.mining.selection import require_candidates
from nemo_hf.mosaic.layout import SUPPORTED_GRIDS

__all__ = ["DEFAULT_SIZE", "SETTING_GROUPS", "NeMoSettings", "settings_in_group"]

SETTING_GROUPS = ("mining", "mosaic", "mechanics")
DEFAULT_SIZE = 480  # the output side when none is set and no model says otherwise: the usual RIS input side


def _setting(default: Any, group: str, help: str) -> Any:
    return field(default=default, metadata={"group": group, "help": help})


@dataclass(frozen=True)
class NeMoSettings:
    """All NeMo parameters (see each field's help); invalid values raise ``ValueError``/``TypeError`` naming them."""

    # -- mining: which negatives (the paper's rule; the values are decided here, the paper publishes none)
    tau_image: float | None = _setting(
        0.9, "mining",
        "Drop a candidate whose CLIP image embedding has cosine > tau_image with the query image: near-duplicates and "
        "the same scene, which may hold an object the expression also fits (the released code's image-image filter, "
        "not its default setting). 0.9 is high enough that only such images go. None: off.")
    tau_text: float | None = _setting(
        None, "mining",
        "Drop a candidate whose text-image cosine exceeds tau_text: the filter of the released code's default setting "
        "and of the project page. Off by default here because a useful value depends on the CLIP's cosine scale "
        "(CLIP ViT-B: caption-photo cosines ~0.3, useful values 0.25-0.35). None: off.")
    tau_own: float | None = _setting(
        None, "mining",
        "Drop a candidate whose text-image cosine exceeds the sentence's own image's by more than tau_own (decided "
        "here, not in the paper). With 0 it drops every image the CLIP prefers to the true one, whatever the CLIP's "
        "scale; negative values drop near-ties too. None: off.")
    top_k: int = _setting(
        20, "mining",
        "Keep the K best-ranked survivors; each mosaic draws its negatives from them. 20 keeps negatives hard (about "
        "the top 0.1% of a RefCOCO-sized pool) while leaving many distinct triples. At least grid*grid-1.")
    clip_revision: str | None = _setting(None, "mining", "Hub revision of a CLIP given by name (a commit pins it).")
    # -- mosaic: how samples are drawn
    grid: int = _setting(2, "mosaic", "Mosaic grid side: 2 (2x2, 3 negatives) as in the paper, 3 for the 3x3 ablation.")
    size: int | None = _setting(
        None, "mosaic",
        f"Side of every output image in pixels. None: the model's input side in training/train.py (a picture is "
        f"resampled once), {DEFAULT_SIZE} (the usual RIS input side) for NeMo used on its own.")
    mosaic_prob: float = _setting(
        0.5, "mosaic", "Chance that a training sample becomes a mosaic (the one value seen, from an author prototype).")
    random_share: float = _setting(
        0.0, "mosaic", "Share of mosaics whose negatives are random pool images instead of mined ones (decided here: "
                       "all mined).")
    warmup_epochs: int = _setting(0, "mosaic", "Epochs of random-only mosaics before mined ones (the released schedule).")
    position_aware: bool = _setting(
        True, "mosaic", "Place the query image in the cell its whole-word position terms name (left, right, top, "
                        "bottom...).")
    cross_point_jitter: float = _setting(
        0.0, "mosaic", "How far, as a fraction of the side, the grid's cross point may move from the centre (0: equal "
                       "cells, as in the paper). Below 0.5.")
    resize: Literal["stretch", "letterbox"] = _setting(
        "stretch", "mosaic", "Cells stretched without keeping aspect ratio (as in the paper) or 'letterbox'.")
    blur_negatives: bool = _setting(False, "mosaic", "Blur the negative cells (an ablation of the released code).")
    thumbnail_cells: bool = _setting(
        True, "mosaic",
        "Draw every mosaic cell from a copy of its pool image shrunk once to the largest cell the layout can give it "
        "(cached beside the pool): a cell decodes several times faster and differs from one drawn from the original "
        "by one or two grey levels; the query's mask still comes from the original at full resolution.")
    seed: int = _setting(0, "mosaic", "Base of the per-(seed, epoch, sentence) generators of every random choice.")
    # -- mechanics: how the work is done
    image_batch_size: int = _setting(64, "mechanics", "Images per CLIP forward pass when mining.")
    text_batch_size: int = _setting(256, "mechanics", "Sentences per CLIP forward pass when mining.")
    search_backend: Backend = _setting(
        "auto", "mechanics",
        "Similarity search: 'exact' (torch, chunked), 'faiss' (flat FAISS index) or 'auto' ('exact'); the choice "
        "changes no negative except between exactly tied scores.")
    device: str | None = _setting(None, "mechanics", "Where CLIP and the search run; None: this process's accelerator.")
    cache_dir: str | None = _setting(
        None, "mechanics", "Embedding and selection cache; None: $HF_HOME/nemo_hf/mining.")

    def __post_init__(self) -> None:
        for name in ("tau_image", "tau_text"):
            value = getattr(self, name)
            if value is not None:
                _check_number(name, value)
                if not -1.0 <= value <= 1.0:
                    raise ValueError(f"{name}={value!r} is not a cosine similarity in [-1, 1] (or None for off)")
        for name, low in (("top_k", 1), ("warmup_epochs", 0), ("seed", 0),
                          ("image_batch_size", 1), ("text_batch_size", 1)):  # fmt: skip
            _check_integer(name, getattr(self, name), low)
        if self.size is not None:
            _check_integer("size", self.size, 1)
        if self.grid not in SUPPORTED_GRIDS or isinstance(self.grid, bool):
            raise ValueError(f"grid={self.grid!r} must be 2 (2x2 mosaic) or 3 (3x3)")
        require_candidates(self.top_k, self.negatives_needed, f"top_k={self.top_k} keeps",
                           "raise top_k or use a smaller grid")
        if self.size is not None and self.size < 2 * self.grid:
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


def settings_in_group(group: str) -> list[Field]:
    """The fields of :class:`NeMoSettings` in ``group`` (one of :data:`SETTING_GROUPS`), in declaration order."""
    if group not in SETTING_GROUPS:
        raise ValueError(f"group must be one of {SETTING_GROUPS}, got {group!r}")
    return [f for f in fields(NeMoSettings) if f.metadata["group"] == group]


def _check_number(name: str, value: object) -> None:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise TypeError(f"{name}={value!r} must be a number")


def _check_integer(name: str, value: object, low: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise ValueError(f"{name}={value!r} must be an integer >= {low}")
