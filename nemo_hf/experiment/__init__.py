"""The experiment that shows NeMo's effect: none / random mosaics / NeMo on the synthetic world.

No real CLIP, COCO or GPU is needed: the world is :mod:`nemo_hf.synthetic` (scenes where
several objects of one category differ by colour, size and position, with RefCOCO- and
RefCOCOg-style expressions), the CLIP is the shipped ``nemo-hf/synthetic-clip``, and the
segmenter is a CLIPSeg (or, with ``segmenter="cris"``, a CRIS) on that CLIP's towers,
trained three times with the same seed, data and budget. ``nemo-hf demo`` runs it with the
defaults of :class:`ExperimentSettings`; ``benchmarks/nemo_effect.py`` runs it over several
seeds and a sweep of NeMo's knobs.

    >>> ExperimentSettings().arms
    ('none', 'random', 'nemo')
"""

from nemo_hf.experiment.run import HARD, run_experiment, train_arm
from nemo_hf.experiment.settings import ARMS, SEGMENTER_TYPES, ExperimentSettings

__all__ = ["ARMS", "HARD", "SEGMENTER_TYPES", "ExperimentSettings", "run_experiment", "train_arm"]
