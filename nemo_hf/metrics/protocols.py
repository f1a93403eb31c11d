"""Evaluation protocols by name: nemo_hf's, and the ones CRIS's and LAVT's code compute, to set numbers beside.

RIS papers report numbers that look alike and are computed differently: how the
prediction is brought to the ground truth's frame, the threshold, which frame is scored,
what an empty union scores, whether ``Prec@X`` counts IoU ≥ X or > X, and which of oIoU
and mIoU the table calls "IoU". An :class:`EvaluationProtocol` fixes all of these;
``training/eval_ris.py --protocol <name>`` scores with one, so a number can stand beside a
paper's table knowing it was computed the same way. What each reads, checked against
the public code (cited per protocol, :data:`PROTOCOLS`):

``nemo_hf`` (the default; :mod:`nemo_hf.metrics.protocol`)
    Logits upsampled bilinearly (``align_corners=False``) straight to the image's original
    size, foreground where ``sigmoid > 0.5``; scored there. Empty union: IoU 1;
    ``Prec@X``: IoU ≥ X. Headline: oIoU (``overall_iou``).

``cris`` — CRIS.pytorch (DerrickWang005/CRIS.pytorch, ``engine/engine.py``: ``inference``)
    ``sigmoid`` first; the probabilities upsampled to the model's input size bicubically
    with ``align_corners=True``; then brought to the original size with
    ``cv2.warpAffine(..., INTER_CUBIC, borderValue=0)`` by the inverse of the input's
    transform; foreground where the probability is ``> 0.35``; scored at the original size.
    IoU ``= I / (U + 1e-6)`` (an empty union scores 0); ``Prec@X``: IoU ``>`` X with X from
    ``torch.arange(0.5, 1.0, 0.1)`` (float32). Its tables' **"IoU" is mIoU** (``mean_iou``);
    its code computes no oIoU (reported here all the same). CRIS letterboxes its input;
    the segmenters here stretch it, so the inverse warp here is that of the stretch,
    sampled as ``warpAffine`` samples (pixel ``x`` of the original reads input position
    ``x · w_in / w``, bicubic with a = −0.75, zeros outside).

``lavt`` — LAVT-RIS (yz93/LAVT-RIS, ``test.py`` and ``transforms.py``)
    Scored at **480 × 480**: the image stretched to 480² (``T.Resize(480, 480)``), the
    ground truth resized to 480² with **nearest** neighbours (PIL's ``NEAREST``), the
    prediction upsampled to the input size bilinearly with ``align_corners=True``
    (``lib/_utils.py``) and taken where the object's logit wins (``argmax`` of two classes:
    ``sigmoid > 0.5``). Empty union: IoU 0; ``Prec@X``: IoU ≥ X. Headline: "overall IoU"
    (oIoU) and "mean IoU" (mIoU). The models here keep their own input size; only the
    scoring frame is LAVT's.

Models that output masks rather than logits (Florence-2's polygons) are drawn directly in
the protocol's frame (the original size, or 480² for ``lavt``); its threshold and upsampling
do not apply to them, its IoU rules do. None of the code bases scores object accuracy
(:mod:`nemo_hf.metrics.objects`): it is computed in the same frame as the masks.

>>> import torch
>>> logits = torch.tensor([[[-4.0, 4.0]]])  # one sample, 1 x 2 logits
>>> [m.int().tolist() for m in protocol("nemo_hf").prediction_masks(logits, [(1, 4)])]
[[[0, 0, 1, 1]]]
>>> protocol("lavt").score_size((375, 500)), protocol("cris").reported_as["IoU"]
((480, 480), 'mean_iou')
>>> protocol("refer")
Traceback (most recent call last):
...
ValueError: unknown evaluation protocol 'refer': choose one of 'nemo_hf', 'cris', 'lavt'
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from nemo_hf.metrics.protocol import logits_to_masks
from nemo_hf.metrics.ris import NEMO_HF_RULES, IoURules

__all__ = ["CRIS", "LAVT", "NEMO_HF", "PROTOCOLS", "PROTOCOL_NAMES", "EvaluationProtocol", "protocol"]

LogitMapping = Literal["bilinear", "cris_warp", "lavt"]


@dataclass(frozen=True)
class EvaluationProtocol:
    """How predictions and ground truth become IoUs: one paper's way, or nemo_hf's (module docstring).

    Attributes:
        name: what ``--protocol`` takes.
        title: one line for reports.
        source: where the definition was read (a repository and its files).
        mapping: how logits reach the scoring frame: ``"bilinear"`` (nemo_hf),
            ``"cris_warp"`` or ``"lavt"``.
        threshold: foreground where the probability exceeds it.
        score_side: a square side to score at (LAVT: 480), or None for the original size.
        iou: the IoU and ``Prec@X`` rules (:class:`~nemo_hf.metrics.ris.IoURules`).
        reported_as: the paper's names of its numbers → the result keys here.
    """

    name: str
    title: str
    source: str
    mapping: LogitMapping = "bilinear"
    threshold: float = 0.5
    score_side: int | None = None
    iou: IoURules = NEMO_HF_RULES
    reported_as: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.mapping not in ("bilinear", "cris_warp", "lavt"):
            raise ValueError(f"mapping must be 'bilinear', 'cris_warp' or 'lavt', got {self.mapping!r}")
        if not 0.0 < self.threshold < 1.0:
            raise ValueError(f"threshold is a probability in (0, 1), got {self.threshold}")

    def score_size(self, original_size: Sequence[int]) -> tuple[int, int]:
        """The ``(height, width)`` a sample is scored at: its own, or the protocol's square."""
        if self.score_side is not None:
            return self.score_side, self.score_side
        return int(original_size[0]), int(original_size[1])

    def prediction_masks(
        self, logits: torch.Tensor, original_sizes: Sequence[Sequence[int]],
        input_size: Sequence[int] | None = None,
    ) -> list[torch.Tensor]:
        """Bool masks in the scoring frame from ``(N, h, w)`` logits, one per sample.

        ``input_size`` is the model's input ``(height, width)`` (CRIS first upsamples to it;
        default: the logits' own size).
        """
        if self.mapping == "bilinear":
            return logits_to_masks(logits, original_sizes, self.threshold)
        logits = logits.float()
        if self.mapping == "lavt":
            side = int(self.score_side or 480)
            upsampled = F.interpolate(logits[:, None], size=(side, side), mode="bilinear", align_corners=True)
            return list(torch.sigmoid(upsampled[:, 0]) > self.threshold)
        size_in = tuple(input_size) if input_size is not None else tuple(logits.shape[-2:])
        probabilities = torch.sigmoid(logits)[:, None]
        if tuple(probabilities.shape[-2:]) != size_in:
            probabilities = F.interpolate(probabilities, size=size_in, mode="bicubic", align_corners=True)
        return [_cris_warp(p[0], tuple(int(v) for v in size)) > self.threshold
                for p, size in zip(probabilities, original_sizes)]

    def target(self, mask: torch.Tensor) -> torch.Tensor:
        """A ground-truth (or instance) mask ``(H, W)`` or ``(K, H, W)`` in the scoring frame (LAVT: nearest)."""
        if self.score_side is None:
            return mask
        side = self.score_side
        planes = mask.reshape(-1, *mask.shape[-2:]).cpu().numpy().astype(np.uint8)
        resized = [np.asarray(Image.fromarray(plane).resize((side, side), Image.Resampling.NEAREST))
                   for plane in planes]
        out = torch.from_numpy(np.stack(resized) if resized else np.zeros((0, side, side), np.uint8)) != 0
        return out.reshape(*mask.shape[:-2], side, side).to(mask.device)


def _cris_warp(probabilities: torch.Tensor, original_size: tuple[int, int]) -> torch.Tensor:
    """``cv2.warpAffine(p, inverse, (w, h), flags=INTER_CUBIC, borderValue=0)`` for a stretched input.

    Output pixel ``(x, y)`` reads input position ``(x · w_in / w, y · h_in / h)`` (the
    affine map of corners, no half-pixel shift), cubic with a = −0.75 (OpenCV's and
    PyTorch's bicubic kernel), zeros outside the input.
    """
    height_in, width_in = probabilities.shape[-2:]
    height, width = original_size
    xs = torch.arange(width, dtype=torch.float64) * (width_in / width)
    ys = torch.arange(height, dtype=torch.float64) * (height_in / height)
    # align_corners=True: -1 and +1 are the centres of the first and last input pixels
    gx = (2 * xs / max(width_in - 1, 1) - 1).float()
    gy = (2 * ys / max(height_in - 1, 1) - 1).float()
    grid = torch.stack(torch.meshgrid(gx, gy, indexing="xy"), dim=-1)[None].to(probabilities.device)
    sampled = F.grid_sample(probabilities[None, None].float(), grid, mode="bicubic", padding_mode="zeros",
                            align_corners=True)
    return sampled[0, 0]


NEMO_HF = EvaluationProtocol(
    name="nemo_hf",
    title="nemo_hf: logits bilinear to the original size, sigmoid > 0.5; empty union IoU 1; Prec@X: IoU >= X",
    source="nemo_hf.metrics (this project's protocol)",
    reported_as={"oIoU": "overall_iou", "mIoU": "mean_iou"},
)
CRIS = EvaluationProtocol(
    name="cris",
    title=("CRIS: probabilities bicubic to the input, cubic warp to the original size, > 0.35; "
           "IoU = I/(U+1e-6); Prec@X: IoU > X (float32); its 'IoU' is mIoU"),
    source="DerrickWang005/CRIS.pytorch, engine/engine.py (inference, validate) and utils/dataset.py (getTransformMat)",
    mapping="cris_warp",
    threshold=0.35,
    iou=IoURules(empty_union_iou=0.0, union_epsilon=1e-6, precision_comparison=">", float32_thresholds=True),
    reported_as={"IoU": "mean_iou"},
)
LAVT = EvaluationProtocol(
    name="lavt",
    title=("LAVT: scored at 480x480, ground truth resized nearest, logits bilinear (align_corners) to 480, "
           "sigmoid > 0.5; empty union IoU 0; Prec@X: IoU >= X"),
    source="yz93/LAVT-RIS, test.py (evaluate, computeIoU), transforms.py (Resize) and lib/_utils.py",
    mapping="lavt",
    score_side=480,
    iou=IoURules(empty_union_iou=0.0),
    reported_as={"overall IoU": "overall_iou", "mean IoU": "mean_iou"},
)
PROTOCOLS: dict[str, EvaluationProtocol] = {p.name: p for p in (NEMO_HF, CRIS, LAVT)}
PROTOCOL_NAMES: tuple[str, ...] = tuple(PROTOCOLS)


def protocol(name: str | EvaluationProtocol) -> EvaluationProtocol:
    """The protocol called ``name`` (one of :data:`PROTOCOL_NAMES`); a protocol is returned as it is."""
    if isinstance(name, EvaluationProtocol):
        return name
    if name not in PROTOCOLS:
        raise ValueError(f"unknown evaluation protocol {name!r}: choose one of "
                         f"{', '.join(repr(n) for n in PROTOCOL_NAMES)}")
    return PROTOCOLS[name]
