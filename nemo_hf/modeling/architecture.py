"""What one referring-segmenter architecture is: its classes, how it is built on a CLIP, and what cards say of it.

Each architecture module declares one :class:`Architecture` beside its code
(:data:`nemo_hf.modeling.clipseg.CLIPSEG`, :data:`nemo_hf.modeling.cris.segmenter.CRIS`);
:mod:`nemo_hf.modeling.registry` lists them, and everything that depends on the
architecture — loading, ``train.py --model_type``, the experiment, model cards — reads it
from there. A new architecture is one new entry, not an edit in five files.

    >>> from nemo_hf.modeling.registry import architecture
    >>> arch = architecture("cris")
    >>> arch.display_name, arch.default_trainable, arch.checkpoint_model_types
    ('CRIS', 'all', ('nemo_cris',))
    >>> arch.trainable_text("decoder")
    "CRIS's neck, decoder and projector only"
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
        adapter: the :class:`~nemo_hf.modeling.parts.PartwiseSegmenter` that trains and runs it.
        build_on_clip: ``(clip, clip_processor, image_size, seed) -> (model, processor)``: a
            new model on a CLIP's towers, its new layers drawn from ``seed``.
        default_trainable: the part its recipe trains.
        new_layers: what cards call the layers it adds to CLIP.
        hub_tag: its tag on the Hub.
        loading_snippet: Markdown showing how to load a checkpoint (``{model_id}`` filled in).
        citation: its BibTeX entry.
        trainable_notes: a note per ``trainable`` choice that the model card prints.
    """

    name: str
    display_name: str
    checkpoint_model_types: tuple[str, ...]
    model_class: type
    processor_class: type
    adapter: type
    build_on_clip: Callable[[Any, Any, int | None, int], tuple[Any, Any]]
    default_trainable: str
    new_layers: str
    hub_tag: str
    loading_snippet: str
    citation: str
    trainable_notes: Mapping[str, str] = field(default_factory=dict)

    def trainable_text(self, trainable: str) -> str:
        """What a model card says was trained, for a ``trainable`` choice."""
        return _TRAINABLE_TEXT.get(trainable, trainable).format(new=self.new_layers)
