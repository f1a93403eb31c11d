"""The experiment that tests NeMo: none / random mosaics / NeMo (CLIP-mined, oracle-mined) on a synthetic world.

No real CLIP, COCO or GPU is needed: the world is :mod:`nemo_hf.synthetic`'s fair world
(scenes where several objects of one category mostly share a colour and differ by size and
position; most sentences need more than category and colour), which carries its ground
truth, so a miner's wrong labels and a model's wrong-object choices can be counted. The CLIP
is the shipped ``nemo-hf/synthetic-clip``; the segmenter one of the registered
architectures on its towers, trained once per arm with the same seed, data and budget by
the training loop of ``training/train.py``, in this process. ``nemo-hf demo`` runs it with
the demo's settings; ``benchmarks/nemo_effect.py`` runs every arm over several seeds and
applies the criteria written in BENCHMARKS.md.

The parts: :mod:`~nemo_hf.experiment.settings`, :mod:`~nemo_hf.experiment.world`,
:mod:`~nemo_hf.experiment.miners`, :mod:`~nemo_hf.experiment.arms`,
:mod:`~nemo_hf.experiment.evaluation`, :mod:`~nemo_hf.experiment.statistics`,
:mod:`~nemo_hf.experiment.report` and :mod:`~nemo_hf.experiment.run` (which runs them in order);
:mod:`~nemo_hf.experiment.clip_gate` measures whether a CLIP reads what the world's sentences
say, the gate of the CLIP-mined arm.

    >>> ExperimentSettings().arms
    ('none', 'random', 'nemo')
"""

from nemo_hf.experiment.arms import arm_config, train_arm
from nemo_hf.experiment.evaluation import PRIMARY
from nemo_hf.experiment.run import run_experiment
from nemo_hf.experiment.settings import ARMS, BENCHMARK_ARMS, ExperimentSettings

__all__ = ["ARMS", "BENCHMARK_ARMS", "PRIMARY", "ExperimentSettings", "arm_config", "run_experiment", "train_arm"]
