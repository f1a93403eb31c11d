"""Mine NeMo negatives for one split and save it, push it, or both.

    python dataset_scripts/mine_negatives.py me/refcoco --config refcoco_unc --split train \\
        --tau-image 0.9 --top-k 20 --out mined/refcoco_unc-train --push me/refcoco-mined
    python dataset_scripts/mine_negatives.py parquet/ --config refcoco_unc --out mined/refcoco_unc-train

The dataset is a Hub dataset repo, a Parquet folder written by
``dataset_scripts/build_refcoco.py --out`` (``--config`` picks one of its configs, as for a
Hub repo), or a folder written by ``save_to_disk`` (a ``Dataset`` or a ``DatasetDict``;
one config, so ``--config`` only names the config that ``--push`` writes). The pool of candidate negatives is ``--pool-split`` of the same
dataset (default: the mined split itself). Adds ``negative_image_ids``,
``negative_scores`` and ``negative_fallback`` (one entry per sentence); ``--push`` adds a
card with the settings, the CLIP's commit, the difficulty figures and sample mosaics. The difficulty
report (JSON + PNG) and the resolved settings go to ``--report-dir`` (default: a
``<out>-report`` folder beside ``--out``). NeMo's mining settings are flags as in
``training/train.py`` (``--tau-image``, ``--top-k`` …, with their help); thresholds take a
number or ``none`` (off).
"""

import sys

from nemo_hf.command_line import run_command
from nemo_hf.dataset_tools.mine_negatives import main

if __name__ == "__main__":  # an error that names its cause prints that, not a traceback (NEMO_HF_DEBUG=1 shows it)
    sys.exit(run_command(lambda: main(sys.argv[1:], description=__doc__)))
