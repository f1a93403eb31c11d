"""Build one RefCOCO-family config as a ``DatasetDict``, write it as Parquet and/or push it to the Hub.

What ``dataset_scripts/build_refcoco.py`` runs (its docstring is the ``--help`` text, with the
examples): :func:`main` parses the command line, checks ``--out`` before the build, builds the
config with :func:`~nemo_hf.data.load.load_refcoco` and writes or pushes it with its card.

    >>> import tempfile
    >>> out = Path(tempfile.mkdtemp())
    >>> (out / "refcoco_unc").mkdir()  # a config built there before: named now, before any build
    >>> main(["refcoco_unc", "--data-dir", "refer/data", "--image-dir", "coco/train2014", "--out", str(out)])
    Traceback (most recent call last):
    ...
    FileExistsError: --out ... already holds config refcoco_unc: pass --overwrite to replace it ...
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from nemo_hf.command_line import HelpFormatter
from nemo_hf.data.configs import VARIANTS, card_fields, synthetic_description
from nemo_hf.data.load import load_refcoco, stats_table
from nemo_hf.hub.cards import render_dataset_card
from nemo_hf.hub.dataset_repos import check_output_folder, push_dataset, write_parquet


def main(argv: Sequence[str] | None = None, description: str | None = None) -> int:
    """``dataset_scripts/build_refcoco.py``: parse ``argv``, run; ``description`` heads ``--help``."""
    parser = argparse.ArgumentParser(description=description or __doc__, formatter_class=HelpFormatter)
    parser.add_argument("config", choices=sorted(VARIANTS))
    parser.add_argument("--data-dir", required=True, help="refer root (holding refcoco/, refcoco+/, ...)")
    parser.add_argument("--image-dir", required=True, help="COCO train2014 (or train2017) images")
    parser.add_argument("--cache-dir", default=None, help="datasets cache (default: HF_DATASETS_CACHE)")
    parser.add_argument("--out", default=None, help="write Parquet here ({out}/{config}/{split}-*.parquet)")
    parser.add_argument("--push", default=None, metavar="REPO_ID", help="push to this Hub dataset repo")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace the config if --out already holds it (once the new one is complete)")
    parser.add_argument("--private", action="store_true", help="create the --push repository private")
    parser.add_argument("--no-verify-images", action="store_true", help="skip the image header/end checks")
    parser.add_argument("--no-instances", action="store_true",
                        help="leave the instances column (every object of the image, for object accuracy) null")
    args = parser.parse_args(argv)
    if not args.out and not args.push:
        parser.error("nothing to do: give --out and/or --push")
    if args.out:  # before the build: what would be replaced is named now
        check_output_folder(args.out, args.config, overwrite=args.overwrite)

    ds = load_refcoco(args.config, args.data_dir, args.image_dir, cache_dir=args.cache_dir,
                      verify_images=not args.no_verify_images, with_instances=not args.no_instances)
    table = stats_table(ds)
    print(table)
    synthetic = synthetic_description(args.data_dir, args.config)  # the card must not pass it off as the real one
    if synthetic is not None:
        print(f"note: {args.data_dir} is nemo_hf's synthetic world ({synthetic}): its card says so")
    fields = card_fields(args.config, synthetic=synthetic)
    if args.out:
        existing = Path(args.out) / "README.md"  # keep the stats of configs written there before
        card = render_dataset_card(repo_id=args.push or "<your-repo>", config_name=args.config,
                                   stats={args.config: table},
                                   previous=existing.read_text() if existing.exists() else None, **fields)
        path = write_parquet(ds, args.out, args.config, card=card)
        print(f"wrote {path / args.config}")
    if args.push:
        push_dataset(ds, args.push, args.config, fields, {args.config: table}, private=args.private)
        print(f"pushed {args.config} to {args.push}")
    return 0
