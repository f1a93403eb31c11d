"""``nemo-hf explore``: a local web page to look at what NeMo's miner chose, and at any segmenter's masks.

- :mod:`~nemo_hf.explore.sources` — the split to look at: a Parquet folder
  (``build_refcoco.py --out``), a ``save_to_disk`` folder, or a Hub id;
- :mod:`~nemo_hf.explore.session` — the logic, no page: for any expression, its ranked
  candidates (text→image and image→image cosines), where τ and K cut, which are kept, the
  fallbacks, the mosaics the settings draw, the wrong labels on synthetic data;
- :mod:`~nemo_hf.explore.app` — the Gradio page (the optional ``[app]`` extra: ``pip install
  "nemo_hf[app]"``), on 127.0.0.1 by default: the mining tab, and a tab that segments an
  uploaded picture with any model the ``referring-image-segmentation`` pipeline loads.

The layer sits beside the command line, above everything it shows.

>>> from nemo_hf.explore.sources import REQUIRED_COLUMNS
>>> REQUIRED_COLUMNS
('image', 'image_id', 'mask', 'sentences')
"""
