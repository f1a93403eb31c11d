"""Train a small CLIP contrastively on the synthetic referring world (the shipped ``nemo-hf/synthetic-clip``).

    python training/train_clip.py --config training/configs/synthetic_clip.yaml
    python training/train_clip.py --config training/configs/synthetic_clip.yaml \\
        --resume_from_checkpoint latest                     # continue a killed run

What it trains on, how, and what it writes: the docstring of ``nemo_hf.trainer.clip_training``.
"""

import sys

from nemo_hf.command_line import run_command
from nemo_hf.trainer.clip_training import main

if __name__ == "__main__":  # an error that names its cause prints that, not a traceback (NEMO_HF_DEBUG=1 shows it)
    sys.exit(run_command(lambda: main(sys.argv[1:], description=__doc__)))
