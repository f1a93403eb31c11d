"""What one referring-segmenter architecture is: its classes, how it runs, how it trains (if it does), what cards say.

Each architecture module declares one :class:`Architecture` beside its code
(:data:`nemo_hf.modeling.clipseg.CLIPSEG`, :data:`nemo_hf.modeling.cris.segmenter.CRIS`,
:data:`nemo_hf.modeling.registry.FLORENCE2`); :mod:`nemo_hf.modeling.registry` lists them, and
everything that depends on the architecture — loading, the pipeline, evaluation,
``train.py --model_type``, the experiment, model cards — reads it from there. A new
architecture is one new entry, not an edit in five files.

What running needs is required of every entry: the classes its checkpoints load with, the
adapter that follows the inference protocol (:mod:`nemo_hf.modeling.inference`) and what its
score means. What training needs is optional: an architecture without ``build_on_clip`` and
``default_trainable`` (Florence-2) runs for inference only, and training refuses it.

    >>> from nemo_hf.modeling.registry import architecture
    >>> arch = architecture("cris")
    >>> arch.display_name, arch.default_trainable, arch.checkpoint_model_types
    ('CRIS', 'all', ('nemo_cris',))
    >>> arch.trainable_text("decoder")
    "CRIS's neck, decoder and projector only"
    >>> architecture("florence2").trains, architecture("cris").trains
    (False, True)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Architecture"]

_TRAINABLE_TEXT = {
    "decoder": "{new} only",
    "decoder+text": "{new} and CLIP's text encoder",
    "all": "the whole model: {new} and both CLIP encoders",
}


@dataclass(frozen=True)
class Architecture:
    """One segmenter architecture.

    Attributes:
        name: its ``model_type`` choice (``train.py --model_type``, ``load_referring_segmenter``).
        display_name: how prose names it.
        checkpoint_model_types: the ``config.model_type`` values of its saved checkpoints.
        model_class, processor_class: what its checkpoints load with.
        adapter: the wrapper that runs it (the inference protocol of
            :mod:`nemo_hf.modeling.inference`), and trains it when it trains (a
            :class:`~nemo_hf.modeling.parts.PartwiseSegmenter`); built as
            ``adapter(model, trainable, loss)``.
        score: what the pipeline's ``score`` means for it (the docs print it).
        hub_tag: its tag on the Hub.
        loading_snippet: Markdown showing how to load a checkpoint (``{model_id}`` filled in).
        citation: its BibTeX entry.
        load_processor: ``(name, revision, token) -> processor`` for its checkpoints (None: its
            image processor, PIL backend, and tokenizer put into ``processor_class``).
        build_on_clip: ``(clip, clip_processor, image_size, seed) -> (model, processor)``: a
            new model on a CLIP's towers, its new layers drawn from ``seed``. None: it is
            not built on a CLIP (and does not train here).
        default_trainable: the part its recipe trains; None: it does not train here.
        new_layers: what cards call the layers it adds to CLIP.
        trainable_notes: a note per ``trainable`` choice that the model card prints.
    """

    name: str
    display_name: str
    checkpoint_model_types: tuple[str, ...]
    model_class: type
    processor_class: type
    adapter: type
    score: str
    hub_tag: str
    loading_snippet: str
    citation: str
    load_processor: Callable[[str, str | None, str | bool | None], Any] | None = None
    build_on_clip: Callable[[Any, Any, int | None, int], tuple[Any, Any]] | None = None
    default_trainable: str | None = None
    new_layers: str = ""
    trainable_notes: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if (self.build_on_clip is None) != (self.default_trainable is None):
            raise ValueError(f"architecture {self.name!r}: build_on_clip and default_trainable go together (both for "
                             "one that trains, neither for one that runs for inference only)")

    @property
    def trains(self) -> bool:
        """Whether nemo_hf trains it (and builds it on a CLIP)."""
        return self.build_on_clip is not None

    def trainable_text(self, trainable: str) -> str:
        """What a model card says was trained, for a ``trainable`` choice."""
        return _TRAINABLE_TEXT.get(trainable, trainable).format(new=self.new_layers)
