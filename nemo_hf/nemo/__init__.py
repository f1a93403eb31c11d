"""NeMo: negative-mined mosaic augmentation, as a ``datasets`` transform.

The paper ranks candidates by CLIP text→image similarity, drops the too-similar ones with
a threshold τ, keeps the top K and draws the mosaic's negatives from those; its τ, K and
CLIP variant are tuned per dataset and not published, so the defaults here are this
project's (``docs/method.md`` keeps the two apart). The parts, one job each:

- :mod:`~nemo_hf.nemo.settings` — :class:`NeMoSettings`, every parameter, validated;
- :mod:`~nemo_hf.nemo.plan` — each sample's random choices, seeded per expression;
- :mod:`~nemo_hf.nemo.pool` — the pool's images (or their shrunk copies) by image_id;
- :mod:`~nemo_hf.nemo.rows` — the row shapes read and written;
- :mod:`~nemo_hf.nemo.transform` — :class:`NeMo`: mining, ``.map``, training transform, epochs;
- :mod:`~nemo_hf.nemo.audit` — drawn mosaics checked against a synthetic world's ground
  truth (wrong labels, look-alikes in negative cells, target sizes).

    >>> from datasets import Dataset, Features, Image, List, Value
    >>> from PIL import Image as PILImage
    >>> colours = ["red", "green", "blue", "yellow", "white", "black"]
    >>> pool = Dataset.from_dict(
    ...     {"image": [PILImage.new("RGB", (48, 32), c) for c in colours],
    ...      "image_id": list(range(6)), "sentences": [[f"the {c} one"] for c in colours]},
    ...     features=Features({"image": Image(), "image_id": Value("int64"),
    ...                        "sentences": List(Value("string"))}))
    >>> import tempfile
    >>> nemo = NeMo(pool, clip="nemo-hf/synthetic-clip", top_k=4, tau_image=None, cache_dir=tempfile.mkdtemp())
    >>> mined = nemo.mine(pool, verbose=False)
    >>> [len(ids) for ids in mined[0]["negative_image_ids"]]
    [4]
"""

from nemo_hf.nemo.settings import NeMoSettings
from nemo_hf.nemo.transform import NeMo

__all__ = ["NeMo", "NeMoSettings"]
