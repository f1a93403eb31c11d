"""What the CLIP miner's filters let through: false negatives and look-alikes, per filter, with no training.

    python -m benchmarks.clip_miner_audit --seeds 2                      # the shipped CLIP, every filter
    python -m benchmarks.clip_miner_audit --seeds 0 2 --clips nemo-hf/synthetic-clip nemo-hf/synthetic-clip-v1 --write

A CLIP that reads the world ranks first the images that hold what the sentence says; in a
world where same-category copies usually share a colour, some of them hold an object the whole
sentence fits, a *false negative*: the mosaic then labels one of two fitting objects as the
target. NeMo's filters exist for that: ``tau_image`` drops near-duplicate images, ``tau_text``
drops candidates whose text→image cosine is above a limit, ``tau_own`` (decided here) drops
candidates the CLIP prefers to the sentence's own image. For the fair test's world of each
seed (the same trees as :mod:`benchmarks.nemo_effect`), each CLIP mines the training split
under each filter and one sample per training sentence is drawn as the ``nemo`` arm draws it
and judged on the ground truth (:func:`nemo_hf.experiment.miners.audit_arm`): the share of
mosaics holding a false negative, a same-category and a same-category-and-colour negative,
beside ``random`` and ``oracle`` mosaics of the same world. Writes the "NeMo's CLIP miner: what
its filters let through" section of BENCHMARKS.md with ``--write``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks import report
from nemo_hf.experiment.miners import audit_arm, mine_for_arm
from nemo_hf.experiment.settings import ExperimentSettings
from nemo_hf.experiment.world import load_world
from nemo_hf.nemo.audit import GroundTruth

SECTION = "NeMo's CLIP miner: what its filters let through"
DEFAULT_OUTPUT = Path(__file__).resolve().parent.parent / "BENCHMARKS.md"
ROOT = Path(__file__).resolve().parent

# name -> the NeMo settings it changes from the experiment's (tau_image 0.9, the rest off)
FILTERS: dict[str, dict[str, float | None]] = {
    "tau_image 0.9 (the default)": {},
    "no filter": {"tau_image": None},
    "tau_own 0": {"tau_own": 0.0},
    "tau_own -0.05": {"tau_own": -0.05},
    "tau_own -0.1": {"tau_own": -0.1},
    "tau_text 0.5": {"tau_text": 0.5},
    "tau_text 0.45": {"tau_text": 0.45},
}
AUDITED = ("false_negative", "same_category", "same_category_colour")


def audit_filters(out: Path, seed: int, clips: Sequence[str], filters: Sequence[str],
                  num_images: int | None = None) -> list[dict[str, Any]]:
    """One row per (CLIP, filter), and one each for random and oracle mosaics, on seed ``seed``'s world.

    ``num_images``: a smaller training world than the fair test's (for a quick check).
    """
    settings = ExperimentSettings(arms=("random", "nemo", "oracle")).replace(seed=seed)
    if num_images is not None:
        settings = settings.replace(num_images=num_images, eval_images=max(num_images // 4, 12))
    world = load_world(out, settings, quiet=True)
    truth = GroundTruth.from_datasets(world.train)
    patch = 8  # only the audit's target-size fields read it, and this table does not report them
    rows = []
    for arm in ("random", "oracle"):
        mined, _ = mine_for_arm(arm, world.train, settings, out)
        rows.append({"seed": seed, "miner": arm, "filter": "—", **_audit(arm, mined, world, truth, settings, patch)})
    for clip in clips:
        for name in filters:
            tuned = settings.replace(clip=clip, nemo=dataclasses.replace(settings.nemo, **FILTERS[name]))
            mined, mining = mine_for_arm("nemo", world.train, tuned, out)
            rows.append({"seed": seed, "miner": clip, "filter": name,
                         "fallback": mining["fallback_sentences"] / mining["sentences"],
                         **_audit("nemo", mined, world, truth, tuned, patch)})
            print(_row(rows[-1]))
    return rows


def _audit(arm: str, mined: Any, world: Any, truth: GroundTruth, settings: ExperimentSettings,
           patch: int) -> dict[str, float]:
    audit = audit_arm(arm, mined, world.train, truth, settings, patch)
    return {key: audit[key] for key in AUDITED}


def _row(row: dict[str, Any]) -> str:
    fallback = "—" if "fallback" not in row else f"{100 * row['fallback']:.1f}%"
    return (f"| {row['seed']} | {row['miner']} | {row['filter']} | "
            + " | ".join(f"{100 * row[key]:.1f}%" for key in AUDITED) + f" | {fallback} |")


def render(rows: Sequence[dict[str, Any]], note: str) -> str:
    """The BENCHMARKS.md section."""
    lines = [f"## {SECTION}", "",
             "`python -m benchmarks.clip_miner_audit`: for the fair test's world of each seed, the training split "
             "mined by each CLIP under each filter (`top_k` 20, 3 negatives per 2×2 mosaic, as the `nemo` arm mines), "
             "one mosaic per training sentence drawn as that arm draws it, judged on the ground truth: the share of "
             "mosaics holding a false negative (an object the whole sentence fits), a negative of the target's "
             "category, and one of its category and colour; fallback is the share of sentences with fewer than 3 "
             "survivors (filled from the least similar candidates). No training. " + note, "",
             "| seed | miner | filter | false negative | same category | same category and colour | fallback |",
             "|---|---|---|---|---|---|---|", *(_row(row) for row in rows)]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[2])
    parser.add_argument("--clips", nargs="+", default=["nemo-hf/synthetic-clip"])
    parser.add_argument("--filters", nargs="+", default=list(FILTERS), choices=list(FILTERS))
    parser.add_argument("--num-images", type=int, default=None, help="a smaller world (default: the fair test's)")
    parser.add_argument("--out", type=Path, default=ROOT / ".cache" / "clip_miner_audit",
                        help="where each seed's world and embeddings go (a nemo_effect seed folder is reused as is)")
    parser.add_argument("--write", action="store_true", help="write the section into BENCHMARKS.md")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    rows = [row for seed in args.seeds for row in audit_filters(args.out / f"seed{seed}", seed, args.clips, args.filters,
                                                 args.num_images)]
    note = f"{report.machine()}; {time.perf_counter() - started:.0f} s in all."
    section = render(rows, note)
    print(section)
    (args.out / "rows.json").write_text(json.dumps(rows, indent=1))
    if args.write:
        report.write_section(DEFAULT_OUTPUT, SECTION, section)
    return rows


if __name__ == "__main__":
    main()
