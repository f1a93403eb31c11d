"""Everything that talks to the Hub (or writes a folder laid out like one), in one place.

- :mod:`~nemo_hf.hub.cards` — model and dataset cards, rendered from ``model_cards/``, and
  :func:`~nemo_hf.hub.cards.model_source` (where a model came from, with its commit);
- :mod:`~nemo_hf.hub.dataset_repos` — Parquet shards, dataset pushes (RefCOCO-family configs,
  NeMo-mined training sets, drawn mosaics) with their cards;
- :mod:`~nemo_hf.hub.model_repos` — checked repository ids, one-commit pushes of a model
  folder, training state only under ``last-checkpoint/``;
- :mod:`~nemo_hf.hub.runs` — :class:`~nemo_hf.hub.runs.HubRun`, the pushes of one training run.

>>> from nemo_hf.hub.model_repos import HUB_CHECKPOINT_DIR
>>> HUB_CHECKPOINT_DIR
'last-checkpoint'
"""
