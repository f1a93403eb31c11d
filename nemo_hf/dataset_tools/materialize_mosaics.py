"""Draw NeMo mosaics for N epochs once, with ``Dataset.map``, and push or write them: fixed augmented data.

What ``dataset_scripts/materialize_mosaics.py`` runs (its docstring is the ``--help`` text, with
the examples): :func:`main` parses the command line (every NeMo setting as a flag), mines rows
that carry no negatives, and draws the epochs with :func:`draw_epochs`.

    >>> import numpy as np
    >>> from PIL import Image
    >>> rows = Dataset.from_dict({
    ...     "image": [Image.new("RGB", (40, 30), c) for c in ("red", "green", "blue", "gray")],
    ...     "mask": [Image.fromarray(np.ones((30, 40), bool))] * 4, "sentences": [["the left one"]] * 4,
    ...     "sent_ids": [[0], [1], [2], [3]], "ref_id": [0, 1, 2, 3], "image_id": [10, 11, 12, 13]})
    >>> nemo = NeMo(rows, size=64, mosaic_prob=1.0, random_share=1.0, top_k=3)  # random mosaics: no mining
    >>> mosaics = draw_epochs(rows, nemo, epochs=2)
    >>> list(mosaics["epoch"]), mosaics[0]["image"].size
    ([0, 0, 0, 0, 1, 1, 1, 1], (64, 64))
"""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Sequence
from pathlib import Path

from datasets import Dataset, DatasetDict, concatenate_datasets, load_dataset

from nemo_hf.command_line import HelpFormatter
from nemo_hf.hub.cards import mining_summary, model_source
from nemo_hf.hub.dataset_repos import check_output_folder, push_mosaics, write_parquet
from nemo_hf.mining.clip import DEFAULT_CLIP
from nemo_hf.nemo.settings import NeMoSettings, settings_in_group
from nemo_hf.nemo.transform import NeMo
from nemo_hf.pretrained import OFFLINE_CLIP_HINT, check_hub_model, check_local_path
from nemo_hf.trainer.args import add_dataclass_flags
from nemo_hf.viz import save_mosaic_grid


def draw_epochs(ds: Dataset, nemo: NeMo, epochs: int, num_proc: int | None = None) -> Dataset:
    """Epochs ``0 … epochs-1`` of ``ds.map(nemo, batched=True)``, one after another, with an ``epoch`` column."""
    drawn = []
    for epoch in range(epochs):
        nemo.set_epoch(epoch)
        mosaics = ds.map(nemo, batched=True, remove_columns=ds.column_names, num_proc=num_proc,
                         desc=f"mosaics of epoch {epoch}")
        drawn.append(mosaics.add_column("epoch", [epoch] * len(mosaics)))
    return concatenate_datasets(drawn)


def main(argv: Sequence[str] | None = None, description: str | None = None) -> int:
    """``dataset_scripts/materialize_mosaics.py``: parse ``argv``, run; ``description`` heads ``--help``."""
    parser = argparse.ArgumentParser(description=description or __doc__, formatter_class=HelpFormatter)
    parser.add_argument("dataset", help="Hub dataset repo id or Parquet folder (load_dataset's first argument)")
    parser.add_argument("--config", default=None, help="its config (e.g. refcoco_unc-nemo)")
    parser.add_argument("--split", default="train", help="the split to draw (its images are the pool)")
    parser.add_argument("--epochs", type=int, default=1, help="epochs of mosaics to draw")
    parser.add_argument("--name", default=None, help="config to write (default: <config>-mosaics)")
    parser.add_argument("--clip", default=DEFAULT_CLIP, help="CLIP that mines rows without negatives")
    parser.add_argument("--num-proc", type=int, default=None, help="processes drawing mosaics")
    parser.add_argument("--out", default=None, help="write Parquet here ({out}/{name}/train-*.parquet)")
    parser.add_argument("--push", default=None, metavar="REPO_ID", help="push to this Hub dataset repo")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace the config if --out already holds it (once the new one is complete)")
    parser.add_argument("--private", action="store_true", help="create the --push repository private")
    settings_names = add_dataclass_flags(parser, NeMoSettings)  # every NeMo setting, as train.py takes them
    args = parser.parse_args(argv)
    if not args.out and not args.push:
        parser.error("nothing to do: give --out and/or --push")
    if args.epochs < 1:
        parser.error(f"--epochs must be >= 1, got {args.epochs}")
    name = args.name or f"{args.config or 'default'}-mosaics"
    if args.out:  # before the drawing: what would be replaced is named now
        check_output_folder(args.out, name, overwrite=args.overwrite)

    check_local_path(args.dataset)
    rows = load_dataset(args.dataset, args.config, split=args.split)
    premined = "negative_image_ids" in rows.column_names
    if not premined:  # mining needs the CLIP: one out of reach is named now, not after half a minute of retries
        check_hub_model(args.clip, flag="--clip", revision=args.clip_revision, instead=OFFLINE_CLIP_HINT)
    nemo = NeMo(rows, args.clip, **{name: getattr(args, name) for name in settings_names})
    if not premined:
        rows = nemo.mine(rows)
    mosaics = draw_epochs(rows, nemo, args.epochs, args.num_proc)
    print(f"drew {len(mosaics)} samples: {args.epochs} epoch(s) of {len(mosaics) // args.epochs} expressions")
    if args.out:
        print(f"wrote {write_parquet(DatasetDict({'train': mosaics}), args.out, name) / name}")
    if args.push:
        clip = None if premined else model_source(args.clip, args.clip_revision)
        mining = mining_summary(settings=nemo.settings.to_dict(), clip=clip, seed=None, report=nemo.last_report,
                                columns=False)
        settings = {f.name: getattr(nemo.settings, f.name) for f in settings_in_group("mosaic")}
        with tempfile.TemporaryDirectory(prefix="nemo_hf-samples-") as folder:
            picture = save_mosaic_grid(mosaics.select(range(min(8, len(mosaics)))), Path(folder) / "samples.png")
            push_mosaics(mosaics, args.push, name, source=args.dataset, source_config=args.config, split=args.split,
                         objects=len(rows), sentences=len(mosaics) // args.epochs, settings=settings, mining=mining,
                         picture=picture, private=args.private or None)
        print(f"pushed {name} to {args.push}")
    return 0
