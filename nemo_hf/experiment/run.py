"""Run the none / random / NeMo experiment end to end and write its report.

Steps, each printed as it runs:

1. **World** — a synthetic refer tree (:mod:`nemo_hf.experiment.world`) read through the
   ``RefCOCO`` builder, exactly as real data would be.
2. **Mining** — NeMo's negatives for every training sentence, mined once with the shipped
   synthetic CLIP and shared by the arms that use them; its difficulty report (chosen
   negatives' text→image scores against the pool's) is saved as JSON and PNG.
3. **Mosaics** — a picture of NeMo samples.
4. **Training** — each arm in this process, by the training loop of ``training/train.py``
   (:mod:`nemo_hf.experiment.arms`): same seed, data, initial weights and steps; only the
   augmentation differs.
5. **Evaluation** — every sentence of the evaluation split, oIoU/mIoU/Prec@X overall, per
   distractor group (0, 1, 2, 3+ and the hard stratum ≥ 2) and per object size.
6. **Report** — ``results.json``, ``report.md`` and PNGs (:mod:`nemo_hf.experiment.report`).

Nothing is read from outside the installed package.

    >>> import inspect
    >>> list(inspect.signature(run_experiment).parameters)
    ['out', 'settings', 'pictures']
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

from nemo_hf.data.load import load_refcoco, per_sentence
from nemo_hf.experiment.arms import train_arm
from nemo_hf.experiment.evaluation import HARD, ArmPredictions, evaluate_arm
from nemo_hf.experiment.report import write_report
from nemo_hf.experiment.settings import ExperimentSettings
from nemo_hf.experiment.world import build_world, image_dir
from nemo_hf.nemo.transform import NeMo
from nemo_hf.viz import save_mosaic_grid

__all__ = ["run_experiment"]


def run_experiment(
    out: str | Path, settings: ExperimentSettings = ExperimentSettings(), *, pictures: bool = True,
) -> dict[str, Any]:
    """Run every step (see the module docstring) into ``out``; return what ``results.json`` holds."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    root = build_world(out, settings)
    built = load_refcoco(settings.dataset, root, image_dir(root), cache_dir=out / "cache")
    train, evaluation = built["train"], per_sentence(built[settings.eval_split])
    if settings.max_train_samples is not None:  # the arms train on these rows only, and draw negatives from them
        train = train.select(range(min(settings.max_train_samples, len(train))))
    print(f"{settings.dataset}: {len(train)} training objects, {len(evaluation)} {settings.eval_split} sentences")

    print(f"\n## Mining negatives with {settings.clip}")
    nemo_settings = dataclasses.replace(settings.nemo, seed=settings.seed, cache_dir=str(out / "cache"),
                                        size=settings.input_size)
    miner = NeMo(pool=train, clip=settings.clip, **nemo_settings.to_dict())
    mined = miner.mine(train, report_dir=out)
    report = miner.last_report
    if pictures:  # at the size the arms train on; every sample a mosaic, from the negatives just mined
        shown = mined.select(range(min(12, len(mined))))
        drawer = NeMo(pool=train, **dataclasses.replace(nemo_settings, mosaic_prob=1.0).to_dict())
        samples = shown.map(drawer, batched=True, remove_columns=shown.column_names, desc="NeMo mosaics")
        print(f"saved {save_mosaic_grid(samples, out / 'mosaics.png', n=8)}")

    arms: dict[str, dict[str, Any]] = {}
    predictions: dict[str, ArmPredictions] = {}
    for arm in settings.arms:
        _, seconds = train_arm(arm, out, root, settings, mined if arm == "nemo" else train)
        predictions[arm] = evaluate_arm(out / "arms" / arm / "final", evaluation)
        arms[arm] = {"metrics": predictions[arm].metrics, "train_seconds": round(seconds, 1)}
        overall = predictions[arm].metrics
        hard = overall["groups"].get(HARD, {})
        print(f"{arm}: oIoU {overall['overall_iou']:.4f}, hard stratum oIoU {hard.get('overall_iou', float('nan')):.4f}")

    results = {
        "settings": settings.to_dict(),
        "mining": {
            "clip": settings.clip,
            "chosen_text_quantiles": report.chosen_text_quantiles,
            "candidate_text_quantiles": report.candidate_text_quantiles,
            "fallback_sentences": report.n_fallback,
            "sentences": report.n_sentences,
        },
        "arms": arms,
        "eval_sentences": len(evaluation),
        "wall_seconds": round(time.perf_counter() - started, 1),
    }
    write_report(out, results, evaluation, predictions, pictures=pictures)
    return results
