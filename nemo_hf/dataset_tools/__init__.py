"""Dataset tools: what the scripts in the repository's ``dataset_scripts/`` folder run.

The scripts are the commands people type (``python dataset_scripts/mine_negatives.py …``;
each one's docstring is its ``--help``); the code they run lives here, so an installed
wheel holds it too and the tests import it. One tool per module, each with a
``main(argv, description)``:

- :mod:`~nemo_hf.dataset_tools.build_refcoco` — build a RefCOCO-family config, write it
  as Parquet and/or push it to the Hub (``build_refcoco.py``);
- :mod:`~nemo_hf.dataset_tools.mine_negatives` — mine NeMo negatives for one split, save
  and/or push it (``mine_negatives.py``);
- :mod:`~nemo_hf.dataset_tools.materialize_mosaics` — draw NeMo mosaics for N epochs once,
  write and/or push them (``materialize_mosaics.py``).

>>> import importlib
>>> [importlib.import_module(f"nemo_hf.dataset_tools.{name}").main.__name__
...  for name in ("build_refcoco", "mine_negatives", "materialize_mosaics")]
['main', 'main', 'main']
"""
