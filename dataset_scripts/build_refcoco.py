"""Build one RefCOCO-family config and write it as Parquet and/or push it to the Hub.

    python dataset_scripts/build_refcoco.py refcoco_unc --data-dir refer/data \\
        --image-dir coco/train2014 --out parquet/ --push me/refcoco

Images are embedded in what is written or pushed; the card carries the stats table, the
citations and the license notes (a tree written by ``nemo_hf.synthetic`` is recognised, and
its card says it is synthetic, with this build's sizes only). An ``--out`` folder holds one
folder per config: building another config there adds it, and a config it already holds is
replaced only with ``--overwrite`` (the rule of every script here).
"""

import sys

from nemo_hf.command_line import run_command
from nemo_hf.dataset_tools.build_refcoco import main

if __name__ == "__main__":  # an error that names its cause prints that, not a traceback (NEMO_HF_DEBUG=1 shows it)
    sys.exit(run_command(lambda: main(sys.argv[1:], description=__doc__)))
