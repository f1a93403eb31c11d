"""``ModelWrapper``: a module that holds a ``transformers`` model as ``.model`` and stands in for it.

The segmenters here (:class:`~nemo_hf.modeling.parts.PartwiseSegmenter` for CLIPSeg and
CRIS, :class:`~nemo_hf.modeling.florence2.Florence2ReferringSegmenter`) wrap a model to give
it the inference protocol. What a caller reads of a model — ``config``, ``device``,
``dtype`` (a ``transformers`` pipeline reads the last two) — and ``save_pretrained`` are the
wrapped model's, so a wrapper saves a checkpoint its own class loads.

>>> from torch import nn
>>> wrapper = ModelWrapper(nn.Linear(2, 1).to(torch.float64))
>>> wrapper.device, wrapper.dtype
(device(type='cpu'), torch.float64)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

__all__ = ["ModelWrapper"]


class ModelWrapper(nn.Module):
    """Holds ``model``; its config, device, dtype and ``save_pretrained`` are the model's (module docstring)."""

    def __init__(self, model: Any) -> None:
        super().__init__()
        self.model = model

    @property
    def config(self) -> Any:
        """The wrapped model's config."""
        return self.model.config

    @property
    def device(self) -> torch.device:
        """Where the model's parameters are (what a ``transformers`` pipeline reads)."""
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        """The dtype of the model's parameters."""
        return next(self.model.parameters()).dtype

    def save_pretrained(self, save_directory: str | Path, **kwargs: Any) -> None:
        """Save the wrapped model (safetensors + config)."""
        self.model.save_pretrained(save_directory, **kwargs)
