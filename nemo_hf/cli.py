"""``nemo-hf`` command line: the offline demo (the none / random / NeMo experiment), and predictions.

    nemo-hf demo                      # 10–15 minutes on two CPU cores; nothing is downloaded
    nemo-hf demo --out my_demo --seed 1 --steps 900
    nemo-hf demo --quick              # a minute: the whole pipeline at a toy budget
    nemo-hf predict --model me/clipseg-nemo-refcoco --image photo.jpg --text "the man on the left" --output mask.png
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from nemo_hf.command_line import run_command

DEMO_CONFIGS = ("refcoco_unc", "refcocoplus_unc", "refcocog_umd", "grefcoco_unc")


def demo(out: Path, settings: object) -> int:
    """Build the synthetic world as every RefCOCO-family variant, then run the experiment in ``out``.

    See :mod:`nemo_hf.experiment`: mining with the shipped synthetic CLIP (difficulty
    report), NeMo mosaics, a segmenter trained three ways (no augmentation, random mosaics,
    NeMo) with the same seed, data and budget, evaluation by distractor group, and
    ``report.md``, ``results.json`` and PNGs.
    """
    from nemo_hf.data.load import load_refcoco, stats_table
    from nemo_hf.experiment.run import run_experiment
    from nemo_hf.experiment.world import build_world, image_dir

    root = build_world(out, settings)
    for name in DEMO_CONFIGS:
        built = load_refcoco(name, root, image_dir(root), cache_dir=out / "cache")
        print(f"\n## {name}\n\n{stats_table(built)}")
    run_experiment(out, settings)
    return 0


def predict(model: str, image: Path, text: str, output: Path, revision: str | None, threshold: float) -> int:
    """Segment what ``text`` refers to in ``image``: the mask to ``output``, an overlay beside it.

    The model is anything the ``referring-image-segmentation`` pipeline loads (a Hub id, a
    folder, a training run's ``final/``). The overlay, ``<output stem>_overlay.png``, dims
    everything but the mask and outlines it.
    """
    import numpy as np
    from transformers.image_utils import load_image

    from nemo_hf.modeling.pipeline import pipeline
    from nemo_hf.viz import overlay_mask

    if not image.is_file():
        raise SystemExit(f"--image {image} is not a file")
    result = pipeline(model=model, revision=revision)(str(image), text, threshold=threshold)
    output.parent.mkdir(parents=True, exist_ok=True)
    result["mask"].save(output)
    overlay = output.with_name(f"{output.stem}_overlay.png")
    overlay_mask(load_image(str(image)), result["mask"]).save(overlay)  # as the pipeline read it (EXIF applied)
    pixels = int((np.asarray(result["mask"]) > 0).sum())
    print(f"mask: {output} ({pixels} pixels), overlay: {overlay}, score {result['score']:.4f}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """``nemo-hf``: run a command; an error that names its cause ends with that message and status 1 (no traceback,
    unless ``NEMO_HF_DEBUG=1``: :mod:`nemo_hf.command_line`)."""
    return run_command(lambda: _run(argv), prog="nemo-hf")


def _run(argv: list[str] | None) -> int:
    from nemo_hf.experiment.settings import ExperimentSettings

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
    run_demo.add_argument("--quick", action="store_true",
                          help="a toy budget (ExperimentSettings.quick: 60 scenes, 5 steps): checks the pipeline; "
                               "its numbers mean nothing")
    run_predict = commands.add_parser(
        "predict", help="segment the object an expression refers to, with a model from the Hub or a folder",
        description=predict.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run_predict.add_argument("--model", required=True, help="Hub id (namespace/name), folder, or a run's final/")
    run_predict.add_argument("--revision", default=None, help="branch, tag or commit of a Hub model")
    run_predict.add_argument("--image", type=Path, required=True, help="the picture")
    run_predict.add_argument("--text", required=True, help="the referring expression")
    run_predict.add_argument("--output", type=Path, default=Path("mask.png"), help="the mask PNG (255 on the object)")
    run_predict.add_argument("--threshold", type=float, default=0.5, help="probability above which a pixel is the object")
    args = parser.parse_args(argv)
    if args.command == "predict":
        return predict(args.model, args.image, args.text, args.output, args.revision, args.threshold)
    settings = defaults.replace(seed=args.seed, num_images=args.num_images, max_train_steps=args.steps)
    if args.quick:
        settings = settings.quick()
    return demo(args.out, settings)


if __name__ == "__main__":
    sys.exit(main())
