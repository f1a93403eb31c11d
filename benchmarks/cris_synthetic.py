"""CRIS or CLIPSeg as the synthetic world's segmenter, and CRIS's ViT pyramids against each other: which learns it better.

Every run is built on the towers of the experiment's backbone CLIP (``ExperimentSettings.backbone``)
and trained whole by the training loop of ``training/train.py`` as the experiment's ``none`` arm
trains (:func:`nemo_hf.experiment.arms.train_arm`: the same world, seed, data order, steps, batch,
learning rates and loss); only the segmenter differs: CLIPSeg, or CRIS with each ViT pyramid
``--pyramid`` names (:mod:`nemo_hf.modeling.cris.features`: ``layers``, this project's, and
``vitdet``, ViTDet's). A CRIS is built once with ``CRISForReferringSegmentation.from_clip`` (its
new layers from the run's seed) and trained from that folder, as ``--model_type cris`` would
build it. Every sentence of the separate evaluation world is then scored at its image's
resolution (:func:`nemo_hf.experiment.evaluation.evaluate_arm`). Reports oIoU and mIoU overall,
object accuracy on referring-hard and easy sentences, and the wall time of each training run,
per seed (``--seeds``: each its own world, data order and initialisation, every run on it), then
every run's paired difference with the first run on the same sentences, per seed and pooled,
with sentence-bootstrap intervals. A run finished before is read back, so an interrupted
benchmark resumes. Writes the "CRIS vs CLIPSeg on the synthetic world" section of BENCHMARKS.md
and ``results.json`` in ``--out``.

    OMP_NUM_THREADS=1 python -m benchmarks.cris_synthetic                        # CLIPSeg, CRIS (a ViT's default pyramid)
    python -m benchmarks.cris_synthetic --segmenters cris --pyramid layers vitdet --seeds 0 1 2  # the pyramids
    python -m benchmarks.cris_synthetic --quick --no-write                        # a smoke run: tiny world, few steps
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import report
from nemo_hf.experiment.arms import curve_subset, train_arm
from nemo_hf.experiment.evaluation import SentenceScores, evaluate_arm
from nemo_hf.experiment.run import compare
from nemo_hf.experiment.settings import ExperimentSettings
from nemo_hf.experiment.world import load_world
from nemo_hf.mining.clip import load_clip
from nemo_hf.modeling.cris.configuration import PYRAMIDS
from nemo_hf.modeling.cris.segmenter import cris_on_clip

SECTION = "CRIS vs CLIPSeg on the synthetic world"
SEGMENTERS = ("clipseg", "cris")
GROUPS = ("referring=hard", "referring=easy")
ROOT = Path(__file__).resolve().parent
DEFAULT_OUTPUT = ROOT.parent / "BENCHMARKS.md"
DEFAULT_STEPS = 300


def runs(segmenters: Sequence[str], pyramids: Sequence[str]) -> list[str]:
    """The runs' names: ``clipseg``, and ``cris`` (one pyramid) or ``cris-<pyramid>`` (several).

    >>> runs(["clipseg", "cris"], ["layers"]), runs(["cris"], ["layers", "vitdet"])
    (['clipseg', 'cris'], ['cris-layers', 'cris-vitdet'])
    """
    names = ["clipseg"] if "clipseg" in segmenters else []
    if "cris" in segmenters:
        names += ["cris"] if len(pyramids) == 1 else [f"cris-{pyramid}" for pyramid in pyramids]
    return names


def build_cris(folder: Path, settings: ExperimentSettings, pyramid: str) -> Path:
    """``folder`` holding a new CRIS on ``settings.backbone`` with ``pyramid``, as ``--model_type cris`` builds one."""
    model, processor = cris_on_clip(*load_clip(settings.backbone), image_size=settings.input_size, seed=settings.seed,
                                    pyramid=pyramid)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def train_and_score(name: str, out: Path, base: ExperimentSettings, world: Any, curve: Any,
                    pyramids: Sequence[str]) -> tuple[dict[str, Any], SentenceScores]:
    """Train run ``name`` on ``world`` (read back if it finished before) and score every evaluation sentence."""
    out.mkdir(parents=True, exist_ok=True)
    if not (out / "cache").exists():  # the world's datasets, built once per seed
        (out / "cache").symlink_to((out.parent / "cache").resolve(), target_is_directory=True)
    if name == "clipseg":
        settings = base.replace(segmenter="clipseg")
    else:
        pyramid = name.removeprefix("cris-") if name != "cris" else pyramids[0]
        settings = base.replace(init_from=str(build_cris(out / "init", base, pyramid)))
    trained, seconds = train_arm("none", out, world.root, settings, world.train, curve)
    arm = evaluate_arm(out / "arms" / "none" / "final", world.evaluation)
    arm.scores.save(out / "scores.npz")
    print(f"{name} (seed {base.seed}): oIoU {arm.metrics['overall_iou']:.4f} in {seconds:.0f} s of training")
    entry = {"train_seconds": round(seconds, 1), "metrics": arm.metrics, "parameters": trained["total_parameters"]}
    return entry, arm.scores


def _pooled(scores: Sequence[SentenceScores]) -> SentenceScores:
    """Several seeds' scores as one list of sentences (each seed's sentences stay paired across runs)."""
    return SentenceScores(*(np.concatenate([getattr(s, f.name) for s in scores]) for f in fields(SentenceScores)))


def differences(scores: dict[int, dict[str, SentenceScores]]) -> dict[str, dict[str, Any]]:
    """Every run against the first, per seed and pooled over the seeds: referring-hard, easy, oIoU, with intervals."""
    names = list(next(iter(scores.values())))
    out: dict[str, dict[str, Any]] = {}
    for name in names[1:]:
        label = f"{name} − {names[0]}"
        out[label] = {str(seed): compare(runs[name], runs[names[0]], seed=seed) for seed, runs in scores.items()}
        if len(scores) > 1:
            out[label]["pooled"] = compare(_pooled([r[name] for r in scores.values()]),
                                           _pooled([r[names[0]] for r in scores.values()]))
    return out


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=DEFAULT_STEPS, help="training steps of each run")
    parser.add_argument("--segmenters", nargs="+", choices=SEGMENTERS, default=list(SEGMENTERS))
    parser.add_argument("--pyramid", nargs="+", choices=PYRAMIDS["clip_vit"], default=[PYRAMIDS["clip_vit"][0]],
                        help="CRIS's ViT pyramid(s): several train one CRIS each, at the same steps")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0],
                        help="one world, data order and initialisation per seed; every run on each")
    parser.add_argument("--quick", action="store_true", help="the toy budget of ExperimentSettings.quick: checks the script")
    parser.add_argument("--out", type=Path, default=ROOT / ".cache" / "cris_synthetic")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    base = ExperimentSettings(arms=("none",), max_train_steps=args.steps)
    if args.quick:
        base = base.quick()
    started = time.perf_counter()
    results: dict[str, Any] = {"settings": base.to_dict(), "seeds": {}}
    scores: dict[int, dict[str, SentenceScores]] = {}
    for seed in args.seeds:
        seeded, folder = base.replace(seed=seed), args.out / f"seed{seed}"
        world_started = time.perf_counter()
        world = load_world(folder, seeded)
        curve = curve_subset(world.evaluation, seeded.curve_sentences, seed)
        entry: dict[str, Any] = {"eval_sentences": len(world.evaluation),
                                 "world_seconds": round(time.perf_counter() - world_started, 1), "segmenters": {}}
        scores[seed] = {}
        for name in runs(args.segmenters, args.pyramid):
            entry["segmenters"][name], scores[seed][name] = train_and_score(
                name, folder / name, seeded, world, curve, args.pyramid)
        results["seeds"][str(seed)] = entry
    results["differences"] = differences(scores)
    results["wall_seconds"] = round(time.perf_counter() - started, 1)
    results["load_average"] = round(os.getloadavg()[0], 1)
    (args.out / "results.json").write_text(json.dumps(results, indent=2))
    section = render(results, args.quick)
    print(section)
    if not args.no_write:
        report.write_section(args.output, SECTION, section)
        print(f"wrote the {SECTION} section of {args.output}")
    return results


def _oiou(metrics: dict[str, Any], group: str) -> str:
    """Object accuracy of a stratum, with its sentence count."""
    entry = metrics["objects"]["groups"].get(group)
    return f"{entry['object_accuracy']:.4f} ({entry['count']})" if entry else "–"


def render(results: dict[str, Any], quick: bool = False) -> str:
    """The Markdown section: one row per run and seed, then each run's paired difference with the first."""
    settings = results["settings"]
    rows = [
        f"| {name} | {seed} | {r['parameters'] / 1e6:.2f} M | {r['metrics']['overall_iou']:.4f} | "
        f"{r['metrics']['mean_iou']:.4f} | " + " | ".join(_oiou(r["metrics"], group) for group in GROUPS)
        + f" | {r['train_seconds']:.0f} |"
        for seed, entry in results["seeds"].items() for name, r in entry["segmenters"].items()
    ]
    full = ExperimentSettings().max_train_steps
    budget = ("" if settings["max_train_steps"] == full else
              f" (the experiment's own budget is {full} steps; fewer here to keep the run short on one thread)")
    seeds = list(results["seeds"])
    first = results["seeds"][seeds[0]]
    lines = [
        f"## {SECTION}",
        "",
        (f"`python -m benchmarks.cris_synthetic`: segmenters on the towers of `{settings['backbone']}`, each trained "
         "whole as the synthetic experiment's `none` arm (`nemo_hf.experiment.arms.train_arm`): "
         f"{settings['num_images']} scenes of {settings['scene_size'][0]}×{settings['scene_size'][1]}, "
         f"{settings['dataset']}, {settings['max_train_steps']} steps{budget} of {settings['train_batch_size']} at "
         f"{settings['input_size']} px, learning rates {settings['learning_rate']:g} (new layers) and "
         f"{settings['encoder_learning_rate']:g} (towers), BCE + Dice, seed(s) {', '.join(seeds)} (each its own "
         "world, data order and initialisation); only the segmenter differs (`cris-layers`, `cris-vitdet`: CRIS "
         "with that ViT pyramid). Scored on every sentence of the separate evaluation world "
         f"({first['eval_sentences']}) at its image's resolution; object accuracy per stratum with its sentence count."
         + (" **Tiny world (`--quick`): a smoke run, not a result.**" if quick else "")),
        "",
        "| segmenter | seed | parameters | oIoU | mIoU | " + " | ".join(f"object accuracy {g}" for g in GROUPS)
        + " | training s |",
        "|---|---|---|---|---|" + "---|" * len(GROUPS) + "---|",
        *rows,
        "",
    ]
    if results["differences"]:
        lines += ["Paired differences on the same sentences, in points, with 95% sentence-bootstrap intervals:", "",
                  "| difference | seed | object accuracy, referring-hard | object accuracy, easy | oIoU |",
                  "|---|---|---|---|---|"]
        for label, per_seed in results["differences"].items():
            lines += [f"| {label} | {seed} | {_points(d['referring_hard'])} | {_points(d['easy'])} | "
                      f"{_points(d['oiou'])} |" for seed, d in per_seed.items()]
        lines.append("")
    lines.append(
        f"One process, {os.environ.get('OMP_NUM_THREADS', 'unset')} OMP thread(s), {report.machine()} (shared: "
        f"load average {results['load_average']:.1f} at the end); the whole run {results['wall_seconds']:.0f} s. "
        "The table compares what each learns per step on a world of coloured shapes: a weak proxy for "
        "photographs, and a few seeds.")
    return "\n".join(lines) + "\n"


def _points(difference: dict[str, Any]) -> str:
    return f"{100 * difference['value']:+.2f} [{100 * difference['low']:+.2f}, {100 * difference['high']:+.2f}]"


if __name__ == "__main__":
    main()
