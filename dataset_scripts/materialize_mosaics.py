"""Draw NeMo mosaics for N epochs once, with ``Dataset.map``, and push or write them: fixed augmented data.

    python dataset_scripts/materialize_mosaics.py me/refcoco-nemo --config refcoco_unc-nemo --epochs 3 \\
        --push me/refcoco-mosaics
    python dataset_scripts/materialize_mosaics.py me/refcoco --config refcoco_unc \\
        --clip openai/clip-vit-base-patch16 --epochs 1 --out parquet/

The dataset is a Hub dataset repo or a Parquet folder (``load_dataset(dataset, config)``);
``--split`` (default train) is drawn, and its images are the pool of negatives. Rows that
carry negatives (``training/train.py --push_dataset_to_hub``, ``mine_negatives.py``) are
drawn from as they are, with no CLIP; other rows are mined first with ``--clip``. Every NeMo
setting is a flag, as in ``training/train.py`` (``--tau-text``, ``--size``, ``--seed`` …; see
``--help``). Epoch e is
``ds.map(nemo, batched=True)`` after ``nemo.set_epoch(e)``: one row per expression, each
sample from its own generator seeded by (seed, epoch, ref_id, sent_id), so a sentence's
mosaic at epoch e is the one training draws for it at epoch e with the same settings.

Out comes config ``<config>-mosaics`` (``--name`` to change it), split train: the columns of
``NeMo``'s output plus ``epoch``. ``--push`` adds a card (settings, negatives, counts per
epoch, sample picture); ``--out`` writes ``<out>/<name>/train-*.parquet``.
"""

import sys

from nemo_hf.command_line import run_command
from nemo_hf.dataset_tools.materialize_mosaics import main

if __name__ == "__main__":  # an error that names its cause prints that, not a traceback (NEMO_HF_DEBUG=1 shows it)
    sys.exit(run_command(lambda: main(sys.argv[1:], description=__doc__)))
