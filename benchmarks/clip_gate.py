"""Does a synthetic CLIP read category, colour and size? Its gate on the fair test's mining pool.

    python -m benchmarks.clip_gate                                        # the shipped CLIP, seed 0's pool
    python -m benchmarks.clip_gate --clips outputs/synthetic-clip --seeds 0 1 2
    python -m benchmarks.clip_gate --write                                # into BENCHMARKS.md

For each CLIP and seed: the fair test's training world of that seed (the pool its ``nemo`` arm
mines from) is built, and :func:`nemo_hf.experiment.clip_gate.clip_reading` scores the
CLIP's text→image cosines against what each pool image holds (AUCs for category, colour and
size given category and colour; own-image R@1 against chance), with the gate of
:data:`~nemo_hf.experiment.clip_gate.GATES`. No timing: the figures are properties of the
weights, the same on any machine up to float rounding.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import datasets

from benchmarks import report
from nemo_hf.data.load import load_refcoco
from nemo_hf.experiment.clip_gate import GATES, clip_reading
from nemo_hf.experiment.settings import ExperimentSettings
from nemo_hf.experiment.world import build_tree, image_dir

SECTION = "The synthetic CLIP's gate: what it reads on the fair test's mining pool"
ROOT = Path(__file__).resolve().parent


def pool_of(seed: int, out: Path, num_images: int | None = None) -> datasets.Dataset:
    """The training rows of the fair test's world for ``seed``: the ``nemo`` arm's mining pool."""
    settings = ExperimentSettings(seed=seed)  # the tree exactly as the experiment writes it (every dataset)
    root = build_tree(out / f"seed{seed}" / "refer", num_images or settings.num_images, seed, settings.world())
    return load_refcoco(settings.dataset, root, image_dir(root), cache_dir=out / f"seed{seed}" / "cache")["train"]


def render(readings: dict[str, dict[int, dict[str, Any]]]) -> str:
    """The BENCHMARKS.md section: one row per CLIP and seed."""
    names = list(GATES)
    lines = [f"## {SECTION}", "",
             "`python -m benchmarks.clip_gate`: per training sentence, the ROC AUC of the CLIP's text→image cosines "
             "for the pool images that hold what the sentence states (its category; its colour; among images with "
             "its category and colour, its size too), averaged over sentences; own-image R@1 beside chance. "
             "Gate: " + ", ".join(f"{name} ≥ {least}" for name, least in GATES.items()) + ".", "",
             "| CLIP | seed | " + " | ".join(f"AUC {name.replace('_', ' ')}" for name in names)
             + " | own-image R@1 (× chance) | passes |",
             "|---|---|" + "---|" * len(names) + "---|---|"]
    for clip, by_seed in readings.items():
        for seed, r in by_seed.items():
            cells = [f"{r[name]:.3f}" if r[name] is not None else "—" for name in names]
            lines.append(f"| `{clip}` | {seed} | " + " | ".join(cells) + f" | {r['own_image_r1']:.4f} "
                         f"({r['own_image_r1'] / r['chance_r1']:.1f}×) | {'yes' if all(r['gates'].values()) else 'no'} |")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> dict[str, dict[int, dict[str, Any]]]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", nargs="+", default=["nemo-hf/synthetic-clip"], help="the nemo arm's CLIP by default")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--num-images", type=int, default=None, help="a smaller world (default: the fair test's)")
    parser.add_argument("--out", type=Path, default=ROOT / ".cache" / "clip_gate")
    parser.add_argument("--write", action="store_true", help="write the table into BENCHMARKS.md")
    args = parser.parse_args(argv)
    readings: dict[str, dict[int, dict[str, Any]]] = {}
    for seed in args.seeds:
        pool = pool_of(seed, args.out, args.num_images)
        for clip in args.clips:
            readings.setdefault(clip, {})[seed] = clip_reading(pool, clip, cache_dir=str(args.out / "embeddings"))
    (args.out / "readings.json").write_text(json.dumps(readings, indent=1))
    section = render(readings)
    print(section)
    if args.write:
        report.write_section(ROOT.parent / "BENCHMARKS.md", SECTION, section)
    return readings


if __name__ == "__main__":
    main()
