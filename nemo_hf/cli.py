"""``nemo-hf`` command line: the offline demo (the none / random / NeMo experiment), and predictions.

    nemo-hf demo                      # under 10 minutes on two idle CPU cores; nothing is downloaded
    nemo-hf demo --out my_demo --seed 1 --steps 400
    nemo-hf demo --quick              # a minute or two: the whole pipeline at a toy budget (numbers mean nothing)
    nemo-hf predict --model nemo_hf_demo/arms/nemo/final --image nemo_hf_demo/refer/images/train2014/<a picture> \\
        --text "the small blue ring at the bottom"             # a model the demo trained, on its world
    nemo-hf predict --model me/clipseg-nemo-refcoco --image photo.jpg --text "the man on the left" --output mask.png

An error ends with its message and exit status 1 (NEMO_HF_DEBUG=1 shows its traceback).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from nemo_hf.command_line import HelpFormatter, run_command

DEMO_CONFIGS = ("refcoco_unc", "refcocoplus_unc", "refcocog_umd", "grefcoco_unc")


def demo(out: Path, settings: object, *, quick: bool = False) -> int:
    """Build the synthetic world as every RefCOCO-family variant, then run the experiment in ``out``.

    See :mod:`nemo_hf.experiment`: the fair synthetic world and its diagnostics (how many
    sentences need more than category and colour, target sizes in mosaic cells, the miners'
    wrong labels, the CLIP's attribute figures), mosaics at the trained size, the shipped
    segmenter fine-tuned three ways (no augmentation, random mosaics, NeMo) with the same
    seed, data and budget, object accuracy and oIoU per stratum, and ``report.md``,
    ``results.json`` and PNGs. An interrupted demo resumes with the arms it had not finished.
    """
    from nemo_hf.data.load import load_refcoco, stats_table
    from nemo_hf.experiment.run import run_experiment
    from nemo_hf.experiment.world import build_tree, image_dir

    root = build_tree(out / "refer", settings.num_images, settings.seed, settings.world())
    for name in DEMO_CONFIGS:
        built = load_refcoco(name, root, image_dir(root), cache_dir=out / "cache")
        print(f"\n## {name}\n\n{stats_table(built)}")
    run_experiment(out, settings, quick=quick)
    return 0


DEMO_OUT = Path("nemo_hf_demo")
# where the demo puts each arm's trained model (nemo_hf.experiment trains arm <a> into <out>/arms/<a>, final/ inside)
DEMO_MODELS = "arms/{arm}/final"


def _models_on_disk() -> str:
    """What ``--model`` can name with no network: the demo's models (those found here first), the shipped CLIP."""
    found = sorted(str(path.parent) for path in DEMO_OUT.glob(f"{DEMO_MODELS.format(arm='*')}/config.json"))
    here = f" (here: {', '.join(found)})" if found else ""
    return ("Use a model on disk instead: a training run's final/ folder — `nemo-hf demo` trains three, into "
            f"{DEMO_OUT}/{DEMO_MODELS.format(arm='<none|random|nemo>')}/{here}, e.g. --model "
            f"{DEMO_OUT}/{DEMO_MODELS.format(arm='nemo')} — or the shipped nemo-hf/synthetic-clip (a segmenter with "
            "an untrained decoder: it checks the pipeline, it does not segment)")


def check_predict_inputs(model: str, image: Path, text: str, output: Path, revision: str | None,
                         threshold: float) -> None:
    """Every input of :func:`predict` checked before a model is loaded; the error names the flag and what to give.

    A Hub id that cannot be had here (offline, or the Hub out of reach, and not cached) is
    named at once, with the models that need no network
    (:func:`~nemo_hf.pretrained.check_hub_model`).
    """
    from PIL import Image, UnidentifiedImageError

    from nemo_hf.data.refer_files import sentence_text
    from nemo_hf.pretrained import check_hub_model, resolve_pretrained

    if not sentence_text(text):
        raise ValueError(f"--text is empty ({text!r}): give the expression that refers to the object, e.g. "
                         '--text "the man on the left"')
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"--threshold {threshold} is not a probability in (0, 1): e.g. 0.5, the default")
    if not image.is_file():
        what = "a folder" if image.is_dir() else "not there"
        raise FileNotFoundError(f"--image {image} is {what}: give the path of a picture (JPEG, PNG, WebP …)")
    try:
        with Image.open(image) as picture:
            picture.load()
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as error:
        raise ValueError(f"--image {image} is not a picture PIL can read ({error}): give a JPEG, PNG, WebP … "
                         "file") from None
    if output.is_dir() or str(output).endswith(("/", os.sep)):
        raise IsADirectoryError(f"--output {output} is a folder: name the mask's file, e.g. --output "
                                f"{output / 'mask.png'}")
    Image.init()
    if Image.registered_extensions().get(output.suffix.lower()) not in Image.SAVE:
        raise ValueError(f"--output {output}: no picture format is saved under the extension "
                         f"{output.suffix or '(none)'!r}; end the name with .png (a mask is saved losslessly there)")
    resolve_pretrained(model)  # a local path that is not there is named now
    check_hub_model(model, flag="--model", revision=revision, instead=_models_on_disk())


def predict(model: str, image: Path, text: str, output: Path, revision: str | None, threshold: float) -> int:
    """Segment what ``text`` refers to in ``image``: the mask to ``output``, an overlay beside it.

    The model is anything the ``referring-image-segmentation`` pipeline loads (a Hub id, a
    folder, a training run's ``final/``: ``nemo-hf demo`` leaves three, in
    ``nemo_hf_demo/arms/<none|random|nemo>/final/``). The overlay, ``<output
    stem>_overlay.png``, dims everything but the mask and outlines it.
    """
    check_predict_inputs(model, image, text, output, revision, threshold)
    import numpy as np
    from transformers.image_utils import load_image

    from nemo_hf.modeling.pipeline import pipeline
    from nemo_hf.viz import overlay_mask

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


def _parser(demo_defaults: object | None) -> argparse.ArgumentParser:
    """The command line; the demo's flags default to ``demo_defaults`` (an ``ExperimentSettings``; None: unread)."""
    parser = argparse.ArgumentParser(prog="nemo-hf", description=__doc__, formatter_class=HelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    run_demo = commands.add_parser(
        "demo", help="the offline none / random / NeMo experiment on a synthetic referring world",
        description=__doc__, formatter_class=HelpFormatter,
    )

    def default(name: str) -> object:
        return None if demo_defaults is None else getattr(demo_defaults, name)

    run_demo.add_argument("--out", type=Path, default=DEMO_OUT,
                          help="where everything is written: the world, report.md, results.json, pictures, and "
                               f"each arm's trained model in <out>/{DEMO_MODELS.format(arm='<arm>')}/")
    run_demo.add_argument("--seed", type=int, default=default("seed"), help="the world's and the training's seed")
    run_demo.add_argument("--num-images", type=int, default=default("num_images"), help="synthetic scenes")
    run_demo.add_argument("--steps", type=int, default=default("max_train_steps"), help="training steps per arm")
    run_demo.add_argument("--quick", action="store_true",
                          help="a toy budget (ExperimentSettings.quick: 60 scenes, 5 steps per arm): checks the "
                               "pipeline; its numbers mean nothing, and its report says so")
    run_predict = commands.add_parser(
        "predict", help="segment the object an expression refers to, with a model from the Hub or a folder",
        description=predict.__doc__, formatter_class=HelpFormatter,
    )
    run_predict.add_argument("--model", required=True,
                             help=f"Hub id (namespace/name), folder, or a run's final/ (the demo's: "
                                  f"{DEMO_OUT}/{DEMO_MODELS.format(arm='nemo')})")
    run_predict.add_argument("--revision", default=None, help="branch, tag or commit of a Hub model")
    run_predict.add_argument("--image", type=Path, required=True, help="the picture")
    run_predict.add_argument("--text", required=True, help="the referring expression")
    run_predict.add_argument("--output", type=Path, default=Path("mask.png"),
                             help="the mask PNG (255 on the object); the overlay goes beside it")
    run_predict.add_argument("--threshold", type=float, default=0.5,
                             help="probability above which a pixel is the object")
    return parser


def _command(argv: list[str]) -> str | None:
    """The command word of ``argv`` (the top level has no option that takes a value)."""
    return next((word for word in argv if not word.startswith("-")), None)


def _run(argv: list[str] | None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    # the demo's defaults live in ExperimentSettings, whose import brings torch and transformers: read only for
    # the demo (to run it, or to show them in its --help), so `nemo-hf --help` and `predict` start light
    defaults = None
    if _command(argv) == "demo":
        from nemo_hf.experiment.settings import ExperimentSettings

        defaults = ExperimentSettings().demo()
    args = _parser(defaults).parse_args(argv)
    if args.command == "predict":
        return predict(args.model, args.image, args.text, args.output, args.revision, args.threshold)
    settings = defaults.replace(seed=args.seed, num_images=args.num_images, max_train_steps=args.steps)
    if args.quick:
        settings = settings.quick()
    return demo(args.out, settings, quick=args.quick)


if __name__ == "__main__":
    sys.exit(main())
