"""Text→image retrieval: how well a CLIP ranks each expression's own image first.

Mining ranks pool images by text→image similarity, so this is the number that says whether
a CLIP's negatives mean anything: for every expression, the rank of its own image among all
images (cosine similarity of the projected, L2-normalised embeddings). Recall@k is the share
of expressions whose image is among the k best; a CLIP that knows nothing scores k / N.

    >>> import numpy as np
    >>> similarities = np.array([[0.9, 0.1, 0.0], [0.2, 0.1, 0.7], [0.5, 0.4, 0.3]])
    >>> retrieval_recall(similarities, [0, 1, 1], ks=(1, 2))
    {'R@1': 0.3333333333333333, 'R@2': 0.6666666666666666, 'chance@1': 0.3333333333333333}
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from datasets import Dataset

from nemo_hf.mining.embed import embed_images, embed_texts

__all__ = ["retrieval_recall", "text_to_image_retrieval"]


def retrieval_recall(similarities: np.ndarray, own_image: Sequence[int], ks: Sequence[int] = (1, 5)) -> dict[str, float]:
    """Recall@k of a (texts × images) similarity matrix, plus the chance level of R@1.

    Ties count against the expression (its image must score strictly above the others to
    rank before them), so a constant matrix scores 0, not 1.
    """
    sims = np.asarray(similarities, dtype=np.float64)
    own = np.asarray(own_image, dtype=np.int64)
    if sims.ndim != 2 or len(own) != sims.shape[0]:
        raise ValueError(f"need a (texts, images) matrix and one image index per text; got {sims.shape} and {len(own)}")
    own_scores = sims[np.arange(len(own)), own]
    # rank = images scoring at least as high as the own image, itself excluded
    rank = (sims >= own_scores[:, None]).sum(axis=1) - 1
    recall = {f"R@{k}": float(np.mean(rank < k)) for k in ks}
    recall["chance@1"] = 1.0 / sims.shape[1]
    return recall


@torch.no_grad()
def text_to_image_retrieval(
    model: Any, processor: Any, images: Dataset, sentences: Sequence[Sequence[str]], *, batch_size: int = 256,
    ks: Sequence[int] = (1, 5),
) -> dict[str, float]:
    """R@k of every sentence against all ``images``; ``sentences[i]`` are the expressions of image ``i``.

    ``images`` is a dataset with ``image`` and ``image_id`` columns (as
    :func:`~nemo_hf.mining.embed.embed_images` takes it); ``model``/``processor`` a
    ``CLIPModel`` and its processor. The model is left in eval mode.
    """
    if len(images) != len(sentences):
        raise ValueError(f"one list of sentences per image: {len(images)} images, {len(sentences)} lists")
    image_embeddings = embed_images(model, processor, images, batch_size=batch_size)
    queries = [text for texts in sentences for text in texts]
    own = [i for i, texts in enumerate(sentences) for _ in texts]
    text_embeddings = embed_texts(model, processor, queries, batch_size=batch_size)
    return retrieval_recall(text_embeddings @ image_embeddings.T, own, ks)
