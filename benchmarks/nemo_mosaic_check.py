"""Does NeMo help? The instrument check: do the trained arms solve mosaics of the evaluation world?

    python -m benchmarks.nemo_mosaic_check --run benchmarks/.cache/nemo_effect/seed2          # every finished arm
    python -m benchmarks.nemo_mosaic_check --run DIR_A DIR_B --arms none oracle --no-write    # several runs, one table

The fair test scores every arm on plain pictures, as RIS is scored. Before reading its
result as "mosaics do not teach the expression" check the instrument: does an arm trained on
mosaics solve mosaics at all? For a finished run of :mod:`benchmarks.nemo_effect` (one seed's
folder), every sentence of its separate evaluation world is drawn once as a mosaic with random
negatives and once with the oracle's (:mod:`nemo_hf.experiment.mosaic_check`), and every
finished arm's final model is scored on them: the right-cell rate (which picture), Prec@0.5
and oIoU (which object), for referring-hard and easy sentences, beside the arm's plain
referring-hard object accuracy. Writes ``mosaic_check.json`` in each run folder (read back while
no arm's model is newer) and the "Does NeMo help? The mosaic check" section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks import report
from nemo_hf.experiment.evaluation import PRIMARY
from nemo_hf.experiment.mosaic_check import NEGATIVES, draw_mosaics, score_model, summarise
from nemo_hf.experiment.settings import ExperimentSettings
from nemo_hf.experiment.world import load_world

SECTION = "Does NeMo help? The mosaic check"
DEFAULT_OUTPUT = Path(__file__).resolve().parent.parent / "BENCHMARKS.md"


def finished_arms(run: Path, results: dict[str, Any]) -> list[str]:
    """The arms of ``results`` whose final model is in ``run``."""
    return [arm for arm in results["arms"] if (run / "arms" / arm / "final" / "config.json").is_file()]


def check(run: Path, arms: Sequence[str] | None = None, negatives: Sequence[str] = NEGATIVES) -> dict[str, Any]:
    """Score ``arms`` (default: every finished one) of the run in ``run`` on mosaics of its evaluation world."""
    results = json.loads((run / "results.json").read_text())
    settings = ExperimentSettings.from_dict(results["settings"])
    arms = list(arms or finished_arms(run, results))
    if (saved := _saved(run, arms, negatives)) is not None:
        print(f"{run}: checked before, read back from mosaic_check.json")
        return saved
    world = load_world(run, settings, quiet=True)
    needs = dict(zip(world.evaluation["sent_id"], world.evaluation["needs"], strict=True))
    out: dict[str, Any] = {"run": str(run), "seed": settings.seed, "steps": settings.max_train_steps,
                           "init_from": settings.init_from, "input_size": settings.input_size, "arms": {}}
    started = time.perf_counter()
    for kind in negatives:
        mosaics = draw_mosaics(world, settings, run / "mosaic_check", kind)
        for arm in arms:
            scores = score_model(run / "arms" / arm / "final", mosaics, needs, grid=settings.nemo.grid)
            plain = results["arms"][arm]["metrics"]["objects"]["groups"].get(PRIMARY, {}).get("object_accuracy")
            entry = out["arms"].setdefault(arm, {"plain_referring_hard_object_accuracy": plain})
            entry[kind] = summarise(scores)
            hard = entry[kind]["referring_hard"]
            print(f"{arm} on {kind} mosaics: referring-hard right cell {hard['right_cell']:.3f}, "
                  f"Prec@0.5 {hard['precision@0.5']:.3f} (plain object accuracy {plain:.3f})")
    out["seconds"] = round(time.perf_counter() - started, 1)
    (run / "mosaic_check.json").write_text(json.dumps(out, indent=1))
    return out


def _saved(run: Path, arms: Sequence[str], negatives: Sequence[str]) -> dict[str, Any] | None:
    """The run's earlier check, if it scored these arms on these negatives and no arm's model changed since."""
    path = run / "mosaic_check.json"
    if not path.is_file():
        return None
    saved = json.loads(path.read_text())
    models = [run / "arms" / arm / "final" / "model.safetensors" for arm in arms]
    if list(saved["arms"]) != list(arms) or any(k not in e for e in saved["arms"].values() for k in negatives):
        return None
    if any(not m.is_file() or m.stat().st_mtime > path.stat().st_mtime for m in models):
        return None
    return saved


def describe(checked: dict[str, Any]) -> str:
    """A run as the table names it: its seed, and how its arms trained."""
    how = "fine-tune" if checked.get("init_from") else "from scratch"
    return f"seed {checked['seed']}, {how}, {checked['steps']} steps"


def render(runs: Sequence[dict[str, Any]], note: str) -> str:
    """The Markdown section: per run, arm and kind of negatives, referring-hard and easy figures."""
    lines = [
        f"## {SECTION}",
        "",
        f"`python -m benchmarks.nemo_mosaic_check --run {' '.join(c['run'] for c in runs)}`: each run's arms "
        "scored on every sentence of its separate evaluation world drawn once as a 2×2 mosaic at the trained input "
        "size (the other cells from the evaluation world: random images, or the oracle's look-alikes with no wrong "
        "label). Right cell: more than half the predicted pixels in the target's cell; Prec@0.5 and oIoU against "
        "the target's mask in the mosaic. Plain: the arm's referring-hard object accuracy on the plain pictures "
        "(the fair test's figure).",
        "",
        "| run | arm | negatives | plain, referring-hard | right cell, referring-hard | right cell, easy | "
        "Prec@0.5, referring-hard | Prec@0.5, easy | oIoU |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for checked in runs:
        for arm, entry in checked["arms"].items():
            for kind in NEGATIVES:
                if kind not in entry:
                    continue
                hard, easy, every = entry[kind]["referring_hard"], entry[kind].get("easy", {}), entry[kind]["all"]
                lines.append(f"| {describe(checked)} | {arm} | {kind} | "
                             f"{entry['plain_referring_hard_object_accuracy']:.3f} | {hard['right_cell']:.3f} | "
                             f"{easy.get('right_cell', float('nan')):.3f} | {hard['precision@0.5']:.3f} | "
                             f"{easy.get('precision@0.5', float('nan')):.3f} | {every['overall_iou']:.3f} |")
    lines += ["", f"{note} The checks took {sum(c['seconds'] for c in runs):.0f} s."]
    return "\n".join(lines) + "\n"  # a blank line before the next section once written


def main(argv: Sequence[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, nargs="+", required=True,
                        help="one seed's folder of benchmarks.nemo_effect (several: one table)")
    parser.add_argument("--arms", nargs="+", default=None, help="default: every finished arm")
    parser.add_argument("--negatives", nargs="+", choices=NEGATIVES, default=list(NEGATIVES))
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    for run in args.run:
        if not (run / "results.json").is_file():
            parser.error(f"{run} holds no results.json: give one seed's folder of a finished nemo_effect run")
    checked = [check(run, args.arms, args.negatives) for run in args.run]
    section = render(checked, f"{report.machine()}; load average {os.getloadavg()[0]:.1f}.")
    print(section)
    if not args.no_write:
        report.write_section(args.output, SECTION, section)
        print(f"wrote the {SECTION} section of {args.output}")
    return checked


if __name__ == "__main__":
    main()
