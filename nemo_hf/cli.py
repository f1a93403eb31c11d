"""``nemo-hf`` command line: the offline demo, which is the none / random / NeMo experiment.

    nemo-hf demo                      # 10–15 minutes on two CPU cores; nothing is downloaded
    nemo-hf demo --out my_demo --seed 1 --steps 900
    nemo-hf demo --quick              # a minute: the whole pipeline at a toy budget
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

DEMO_CONFIGS = ("refcoco_unc", "refcocoplus_unc", "refcocog_umd", "grefcoco_unc")


def demo(out: Path, settings: object) -> int:
    """Build the synthetic world as every RefCOCO-family variant, then run the experiment in ``out``.

    See :mod:`nemo_hf.experiment`: mining with the shipped synthetic CLIP (difficulty
    report), NeMo mosaics, a segmenter trained three ways (no augmentation, random mosaics,
    NeMo) with the same seed, data and budget, evaluation by distractor group, and
    ``report.md``, ``results.json`` and PNGs.
    """
    from nemo_hf.data import load_refcoco, stats_table
    from nemo_hf.experiment import run_experiment
    from nemo_hf.experiment.run import build_world

    root = build_world(out, settings)
    for name in DEMO_CONFIGS:
        built = load_refcoco(name, root, root / "images" / "train2014", cache_dir=out / "cache")
        print(f"\n## {name}\n\n{stats_table(built)}")
    run_experiment(out, settings)
    return 0


def main(argv: list[str] | None = None) -> int:
    from nemo_hf.experiment import ExperimentSettings

    parser = argparse.ArgumentParser(prog="nemo-hf", description="NeMo on the Hugging Face stack")
    commands = parser.add_subparsers(dest="command", required=True)
    run_demo = commands.add_parser(
        "demo", help="the offline none / random / NeMo experiment on a synthetic referring world",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    defaults = ExperimentSettings()
    run_demo.add_argument("--out", type=Path, default=Path("nemo_hf_demo"), help="where everything is written")
    run_demo.add_argument("--seed", type=int, default=defaults.seed, help="the world's and the training's seed")
    run_demo.add_argument("--num-images", type=int, default=defaults.num_images, help="synthetic scenes")
    run_demo.add_argument("--steps", type=int, default=defaults.max_train_steps, help="training steps per arm")
    run_demo.add_argument("--quick", action="store_true", help="a toy budget (60 scenes, 5 steps): checks the pipeline")
    args = parser.parse_args(argv)
    settings = defaults.replace(seed=args.seed, num_images=args.num_images, max_train_steps=args.steps)
    if args.quick:
        settings = settings.replace(num_images=60, max_train_steps=5, train_batch_size=8, top_k=5)
    return demo(args.out, settings)


if __name__ == "__main__":
    sys.exit(main())
