"""``nemo-hf`` command line: the offline demo (and, later, the full pipeline on it).

    nemo-hf demo                 # synthetic refer data → datasets → stats + sample PNG
    nemo-hf demo --out my_demo --num-images 60 --seed 1
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

DEMO_CONFIGS = ("refcoco_unc", "refcocoplus_unc", "refcocog_umd", "grefcoco_unc")


def demo(out: Path, num_images: int, seed: int) -> int:
    """Run the main job on its embedded default: nothing is downloaded."""
    from .data import load_refcoco, stats_table
    from .data.synthetic import SyntheticRefer, make_refer_dataset
    from .viz import save_sample_grid

    out.mkdir(parents=True, exist_ok=True)
    tree_root = out / "refer"
    if tree_root.exists():
        print(f"reusing the synthetic refer tree in {tree_root}")
        tree = SyntheticRefer(tree_root, num_images=num_images)
    else:
        print(f"writing a synthetic refer-format tree ({num_images} images, seed {seed}) to {tree_root}")
        tree = make_refer_dataset(tree_root, num_images=num_images, seed=seed, show_progress=True)
    for name in DEMO_CONFIGS:
        ds = load_refcoco(name, tree.root, tree.image_dir, cache_dir=out / "cache")
        print(f"\n## {name}\n\n{stats_table(ds)}")
        if name == "refcoco_unc":
            samples = save_sample_grid(ds["train"], out / "samples_refcoco_unc.png", n=6)
    print(f"\nsaved {samples}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="nemo-hf", description="NeMo on the Hugging Face stack")
    commands = parser.add_subparsers(dest="command", required=True)
    run_demo = commands.add_parser("demo", help="offline demo on generated refer-format data")
    run_demo.add_argument("--out", type=Path, default=Path("nemo_hf_demo"))
    run_demo.add_argument("--num-images", type=int, default=48)
    run_demo.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.command == "demo":
        return demo(args.out, args.num_images, args.seed)
    return 2


if __name__ == "__main__":
    sys.exit(main())
