"""The evaluation protocol around the metrics: logits → mask, and difficulty groups.

**Prediction → mask.** A model predicts mask logits at its input resolution (CLIPSeg:
352 × 352, the image stretched to a square). :func:`logits_to_mask` upsamples the
*logits* bilinearly (``align_corners=False``) straight to the original ``(H, W)`` of the
image, which also undoes the stretch, and only then thresholds: foreground where
``sigmoid(logit) > 0.5``. Resizing logits rather than a thresholded mask keeps the
boundary sub-pixel accurate instead of blocky; scoring at the original resolution is what
the RefCOCO protocol asks for (LAVT instead scores at 480 × 480 against a
nearest-resized ground truth, which gives different numbers). A processor that pads
(letterboxes) instead of stretching needs its padding cropped off before this step.

**Groups**, like the paper's analyses (its gain grows with the number of distractors and
is larger for small objects):

- :func:`distractor_group`: ``"0"``, ``"1"``, ``"2"``, ``"3+"`` from the dataset's
  ``distractors`` column — the number of *other annotated objects of the same category*
  in the image. The paper counts *detected* objects instead; the grouping is the same.
- :func:`size_group`: COCO's object-size bins on the ground-truth mask's pixel count at
  the original resolution: ``small`` < 32², ``medium`` < 96², ``large`` otherwise. RefCOCO,
  RefCOCO+ and RefCOCOg objects are COCO annotations on COCO images at their own
  resolution, so these are the bins readers know from COCO's AP_S/AP_M/AP_L (COCO measures
  the polygon area; the mask's pixel count is within a few pixels of it). The paper's own
  size bins are not in the sources this project had.

>>> import torch
>>> mask = logits_to_mask(torch.tensor([[-4.0, 4.0]]), original_size=(2, 4))
>>> mask.int().tolist()
[[0, 0, 1, 1], [0, 0, 1, 1]]
>>> group_labels(distractors=4, mask_area=30 * 30)
['distractors=3+', 'size=small']
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

Logits = np.ndarray | torch.Tensor

SMALL_AREA = 32**2
LARGE_AREA = 96**2


def _check_size(size: Sequence[int], where: str) -> tuple[int, int]:
    if len(size) != 2 or any(int(v) != v or v < 1 for v in size):
        raise ValueError(f"{where} must be (height, width) with positive integers, got {tuple(size)!r}")
    return int(size[0]), int(size[1])


def logits_to_mask(logits: Logits, original_size: Sequence[int], threshold: float = 0.5) -> Logits:
    """Upsample ``(h, w)`` or ``(N, h, w)`` logits bilinearly to ``original_size`` and threshold.

    Foreground where ``sigmoid(logit) > threshold``. Returns a bool tensor on the logits'
    device, or a bool numpy array when given numpy. All masks of a batch get one size; for
    images of different sizes use :func:`logits_to_masks`.

    >>> import numpy as np
    >>> logits_to_mask(np.zeros((3, 3)) + 0.1, (2, 5)).shape
    (2, 5)
    """
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"threshold is a probability in (0, 1), got {threshold}")
    height, width = _check_size(original_size, "original_size")
    as_numpy = not isinstance(logits, torch.Tensor)
    tensor = logits if isinstance(logits, torch.Tensor) else torch.from_numpy(np.asarray(logits))
    if tensor.ndim not in (2, 3) or not tensor.is_floating_point():
        raise ValueError(
            f"logits must be a float (h, w) or (N, h, w) array, got shape {tuple(tensor.shape)} and dtype {tensor.dtype}"
        )
    # float32: half-precision bilinear upsampling is not supported on every device
    batch = tensor.reshape(-1, 1, *tensor.shape[-2:]).float()
    upsampled = F.interpolate(batch, size=(height, width), mode="bilinear", align_corners=False)
    mask = (torch.sigmoid(upsampled) > threshold).reshape(*tensor.shape[:-2], height, width)
    return mask.cpu().numpy() if as_numpy else mask


def logits_to_masks(
    logits: Logits | Sequence[Logits], original_sizes: Sequence[Sequence[int]], threshold: float = 0.5
) -> list[Logits]:
    """One mask per sample, each at its own image's size: :func:`logits_to_mask` per sample.

    >>> import torch
    >>> [m.shape for m in logits_to_masks(torch.zeros(2, 4, 4), [(3, 5), (6, 2)])]
    [torch.Size([3, 5]), torch.Size([6, 2])]
    """
    if len(logits) != len(original_sizes):
        raise ValueError(f"got {len(logits)} logit maps but {len(original_sizes)} original sizes")
    return [logits_to_mask(sample, size, threshold) for sample, size in zip(logits, original_sizes)]


def distractor_group(distractors: int) -> str:
    """``"0"``, ``"1"``, ``"2"`` or ``"3+"`` for a number of distractor objects.

    >>> [distractor_group(n) for n in (0, 1, 2, 3, 7)]
    ['0', '1', '2', '3+', '3+']
    """
    if isinstance(distractors, bool) or int(distractors) != distractors or distractors < 0:
        raise ValueError(f"distractors must be a non-negative integer, got {distractors!r}")
    return str(int(distractors)) if distractors < 3 else "3+"


def size_group(mask_area: int) -> str:
    """COCO size bin of a ground-truth mask's pixel count: ``small`` < 32² ≤ ``medium`` < 96² ≤ ``large``.

    >>> [size_group(a) for a in (0, 1023, 1024, 9215, 9216)]
    ['small', 'small', 'medium', 'medium', 'large']
    """
    if isinstance(mask_area, bool) or int(mask_area) != mask_area or mask_area < 0:
        raise ValueError(f"mask_area must be a non-negative pixel count, got {mask_area!r}")
    if mask_area < SMALL_AREA:
        return "small"
    return "medium" if mask_area < LARGE_AREA else "large"


REFERRING_HARD = "referring=hard"  # the sentence needs more than category and colour to single out its target
REFERRING_EASY = "referring=easy"  # the rest: category and colour suffice (known only on synthetic data)


def group_labels(
    distractors: int | None = None, mask_area: int | None = None, referring_hard: bool | None = None
) -> list[str]:
    """The group names of one sample, for ``RISMetrics.update(..., groups=...)``.

    ``referring_hard`` (known where the data carries each sentence's ``needs``: the synthetic
    world) adds the referring stratum: :data:`REFERRING_HARD` or :data:`REFERRING_EASY`.

    >>> group_labels(distractors=1, mask_area=100 * 100)
    ['distractors=1', 'size=large']
    >>> group_labels(mask_area=5, referring_hard=True)
    ['size=small', 'referring=hard']
    """
    labels = []
    if distractors is not None:
        labels.append(f"distractors={distractor_group(distractors)}")
    if mask_area is not None:
        labels.append(f"size={size_group(mask_area)}")
    if referring_hard is not None:
        labels.append(REFERRING_HARD if referring_hard else REFERRING_EASY)
    return labels
