"""``nemo-hf`` command line: the offline demo (and, later, the full pipeline on it).

    nemo-hf demo     # synthetic refer data → datasets → mining → mosaics → tiny training + evaluation
    nemo-hf demo --out my_demo --num-images 60 --seed 1
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

TRAINING = Path(__file__).resolve().parents[1] / "training"
DEMO_CONFIGS = ("refcoco_unc", "refcocoplus_unc", "refcocog_umd", "grefcoco_unc")


def demo(out: Path, num_images: int, seed: int) -> int:
    """Run the main job on its embedded default: nothing is downloaded.

    Synthetic refer data → every RefCOCO-family variant as a dataset → CLIP negative mining
    (a tiny CLIP built from a config, so the negatives show the pipeline, not CLIP's
    judgement) → NeMo mosaics, each step's output printed or saved under ``out``.
    """
    from .data import load_refcoco, stats_table
    from .synthetic import SyntheticRefer, make_refer_dataset
    from .nemo import NeMo
    from .testing.tiny_models import tiny_clip
    from .viz import save_mosaic_grid, save_sample_grid

    out.mkdir(parents=True, exist_ok=True)
    tree_root = out / "refer"
    if tree_root.exists():
        print(f"reusing the synthetic refer tree in {tree_root}")
        tree = SyntheticRefer(tree_root, num_images=num_images)
    else:
        print(f"writing a synthetic refer-format tree ({num_images} images, seed {seed}) to {tree_root}")
        tree = make_refer_dataset(tree_root, num_images=num_images, seed=seed, show_progress=True)
    built = {}
    for name in DEMO_CONFIGS:
        built[name] = load_refcoco(name, tree.root, tree.image_dir, cache_dir=out / "cache")
        print(f"\n## {name}\n\n{stats_table(built[name])}")
    train = built["refcoco_unc"]["train"]
    print(f"\nsaved {save_sample_grid(train, out / 'samples_refcoco_unc.png', n=6)}")

    print("\n## NeMo: mining negatives with a tiny offline CLIP, then mosaics")
    nemo = NeMo(train, *tiny_clip(seed), top_k=8, tau_image=0.95, mosaic_prob=0.75, random_share=0.25,
                size=320, seed=seed, cache_dir=str(out / "mining_cache"))
    mined = nemo.mine(train, report_dir=out / "mining_report")
    augmented = mined.map(nemo, batched=True, remove_columns=mined.column_names, desc="NeMo mosaics")
    kinds = {kind: augmented["mosaic_kind"].count(kind) for kind in ("single", "random", "mined")}
    print(f"{len(augmented)} samples (one per expression): {kinds}")
    print(f"saved {save_mosaic_grid(augmented, out / 'mosaics_refcoco_unc.png', n=8)}")
    return train_tiny(out)


def train_tiny(out: Path) -> int:
    """Fine-tune the tiny CLIPSeg with NeMo on the fly (training/, in a source checkout)."""
    script = TRAINING / "train.py"
    if not script.exists():
        print(f"\nno {script}: training runs from a source checkout of nemo_hf (skipped)")
        return 0
    print("\n## Training the tiny CLIPSeg with NeMo on the fly (a pipeline check: random backbone)")
    config = TRAINING / "configs" / "tiny_synthetic.yaml"
    # a demo run again replaces its own earlier run
    subprocess.run([sys.executable, str(script), "--config", str(config), "--output_dir", str(out / "train"),
                    "--cache_dir", str(out / "cache"), "--overwrite_output_dir"], check=True)
    model = out / "train" / "final"
    subprocess.run([sys.executable, str(TRAINING / "eval_ris.py"), "--config", str(out / "train" / "train_config.yaml"),
                    "--model_name_or_path", str(model), "--output_dir", str(out / "eval"), "--overwrite_output_dir"],
                   check=True)
    print(f"saved {model} (the model, its card, all_results.json) and {out / 'eval'} (eval_results.json, "
          "predictions_*.png)")
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
