"""Train chosen parts of a referring segmenter: its new decoder, CLIP's text encoder, CLIP's vision encoder.

Every segmenter here is CLIP's two towers plus new layers (CLIPSeg's decoder, CRIS's neck,
decoder and projector). :class:`PartwiseSegmenter` wraps such a model and trains one of
three selections (``trainable``):

- ``"decoder"`` — the new layers only; both CLIP towers frozen;
- ``"decoder+text"`` — also the text tower (and its projection);
- ``"all"`` — the whole model, vision tower included.

A subclass names which modules form each part (:meth:`PartwiseSegmenter.part_modules`)
and computes the logits (:meth:`PartwiseSegmenter.mask_logits`). What follows is shared: the
forward pass returns a :class:`~nemo_hf.modeling.interface.ReferringSegmenterOutput`, with the
loss that the wrapped model's ``config.segmentation_loss`` names when labels are given; parameters outside the selection get
``requires_grad=False`` (DDP refuses parameters that never receive a gradient), the
selection's parameters are listed per part for the optimizer (a smaller learning rate
for the pretrained towers), and in train mode every frozen subtree stays in eval mode,
so its dropout stays off and its batch-norm statistics stay as they were.

>>> from torch import nn
>>> class Toy(PartwiseSegmenter):
...     def part_modules(self):
...         return {"decoder": [self.model[2]], "text": [self.model[1]], "vision": [self.model[0]]}
...     def mask_logits(self, pixel_values, input_ids, attention_mask):
...         return self.model(pixel_values)[..., 0]
>>> toy = Toy(nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 2), nn.Sequential(nn.Linear(2, 1), nn.Dropout())),
...           trainable="decoder")
>>> sorted(toy.trainable_parameters()), toy.train().model[0].training, toy.model[2][1].training
(['decoder'], False, True)
>>> toy.eval()(torch.zeros(1, 2, 3, 2), None, None, labels=torch.zeros(1, 2, 3)).loss.shape
torch.Size([])
"""

from __future__ import annotations

from typing import Literal, get_args

import torch
from torch import nn

from nemo_hf.modeling.inference import LogitsInference
from nemo_hf.modeling.interface import ReferringSegmenterOutput
from nemo_hf.modeling.losses import SEGMENTATION_LOSSES, SegmentationLoss, segmentation_loss
from nemo_hf.modeling.wrapper import ModelWrapper

__all__ = ["PARTS_TRAINED", "TRAINABLE_CHOICES", "PartwiseSegmenter", "Trainable"]

Trainable = Literal["decoder", "decoder+text", "all"]
TRAINABLE_CHOICES: tuple[str, ...] = get_args(Trainable)
PARTS_TRAINED: dict[str, tuple[str, ...]] = {
    "decoder": ("decoder",),
    "decoder+text": ("decoder", "text"),
    "all": ("decoder", "text", "vision"),
}


class PartwiseSegmenter(LogitsInference, ModelWrapper):
    """A model (kept as ``.model``) of which the ``trainable`` parts train (see the module docstring).

    It runs as every logits model does (:class:`~nemo_hf.modeling.inference.LogitsInference`).
    Subclasses implement :meth:`part_modules` and :meth:`mask_logits`; ``save_pretrained``
    saves the wrapped model as it is, so the output loads with its own class's
    ``from_pretrained``. ``loss`` (one of :data:`~nemo_hf.modeling.losses.SEGMENTATION_LOSSES`)
    is written into the wrapped model's config, so it is saved with the model; None keeps
    the config's (``"bce"`` when it names none).
    """

    def __init__(self, model: nn.Module, trainable: Trainable, loss: SegmentationLoss | None = None) -> None:
        if trainable not in TRAINABLE_CHOICES:
            raise ValueError(f"trainable must be one of {TRAINABLE_CHOICES}, got {trainable!r}")
        if loss is not None:
            if loss not in SEGMENTATION_LOSSES:
                raise ValueError(f"loss must be one of {SEGMENTATION_LOSSES}, got {loss!r}")
            model.config.segmentation_loss = loss
        super().__init__(model)
        self.trainable = trainable
        model.requires_grad_(False)
        for params in self.trainable_parameters().values():
            for param in params:
                param.requires_grad_(True)

    def part_modules(self) -> dict[str, list[nn.Module]]:
        """The modules of each part: ``"decoder"`` (the new layers), ``"text"`` and ``"vision"`` (the CLIP towers).

        A parameter in none of them (CLIP's logit scale, say) is never trained.
        """
        raise NotImplementedError

    def mask_logits(
        self, pixel_values: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> torch.Tensor:
        """Mask logits ``(B, h, w)`` at the model's output resolution."""
        raise NotImplementedError

    def forward(
        self, pixel_values: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor,
        labels: torch.Tensor | None = None,
    ) -> ReferringSegmenterOutput:
        """The logits, and with ``labels`` the loss of :attr:`segmentation_loss`."""
        logits = self.mask_logits(pixel_values, input_ids, attention_mask)
        loss = None if labels is None else segmentation_loss(logits, labels.to(logits.device), self.segmentation_loss)
        return ReferringSegmenterOutput(loss=loss, logits=logits)

    @property
    def segmentation_loss(self) -> str:
        """The training loss the wrapped model's config names (``"bce"`` when it names none)."""
        return getattr(getattr(self.model, "config", None), "segmentation_loss", None) or "bce"

    def trainable_parameters(self) -> dict[str, list[nn.Parameter]]:
        """Trainable parameters by part, the selection's parts only; the optimizer gives each part its learning rate."""
        modules = self.part_modules()
        return {part: [p for module in modules[part] for p in module.parameters()] for part in PARTS_TRAINED[self.trainable]}

    def train(self, mode: bool = True) -> PartwiseSegmenter:
        """Train mode for the trained parts; every subtree whose parameters are all frozen stays in eval mode."""
        super().train(mode)
        if mode:
            _frozen_subtrees_to_eval(self.model)
        return self


def _frozen_subtrees_to_eval(module: nn.Module) -> None:
    """Eval mode for each largest subtree that holds parameters, none of them trainable."""
    for child in module.children():
        params = list(child.parameters())
        if params and not any(p.requires_grad for p in params):
            child.eval()
        else:
            _frozen_subtrees_to_eval(child)
