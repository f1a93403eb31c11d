"""The experiment that shows NeMo's effect: none / random mosaics / NeMo on the synthetic world.

No real CLIP, COCO or GPU is needed: the world is :mod:`nemo_hf.synthetic` (scenes where
several objects of one category differ by colour, size and position, with RefCOCO- and
RefCOCOg-style expressions), the CLIP is the shipped ``nemo-hf/synthetic-clip``, and the
segmenter is one of the registered architectures on that CLIP's towers, trained three times
with the same seed, data and budget by the training loop of ``training/train.py``, in this
process. ``nemo-hf demo`` runs it with the defaults of :class:`ExperimentSettings`;
``benchmarks/nemo_effect.py`` runs it over several seeds and a sweep of NeMo's knobs.

The parts: :mod:`~nemo_hf.experiment.settings`, :mod:`~nemo_hf.experiment.world`,
:mod:`~nemo_hf.experiment.arms`, :mod:`~nemo_hf.experiment.evaluation`,
:mod:`~nemo_hf.experiment.report` and :mod:`~nemo_hf.experiment.run` (which runs them in order).

    >>> ExperimentSettings().arms
    ('none', 'random', 'nemo')
"""

from nemo_hf.experiment.arms import arm_config, train_arm
from nemo_hf.experiment.evaluation import HARD
from nemo_hf.experiment.run import run_experiment
from nemo_hf.experiment.settings import ARMS, ExperimentSettings

__all__ = ["ARMS", "HARD", "ExperimentSettings", "arm_config", "run_experiment", "train_arm"]
