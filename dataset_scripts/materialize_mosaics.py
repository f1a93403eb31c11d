"""Draw NeMo mosaics for N epochs once, with ``Dataset.map``, and push or write them: fixed augmented data.

    python dataset_scripts/materialize_mosaics.py me/refcoco-nemo --config refcoco_unc-nemo --epochs 3 \\
        --push me/refcoco-mosaics
    python dataset_scripts/materialize_mosaics.py me/refcoco --config refcoco_unc \\
        --clip openai/clip-vit-base-patch16 --epochs 1 --out parquet/

The dataset is a Hub dataset repo or a Parquet folder (``load_dataset(dataset, config)``);
``--split`` (default train) is drawn, and its images are the pool of negatives. Rows that
carry negatives (``training/train.py --push_dataset_to_hub``, ``mine_negatives.py``) are
drawn from as they are, with no CLIP; other rows are mined first with ``--clip``. Every NeMo
setting is a flag, as in ``training/train.py`` (``--tau-text``, ``--size``, ``--seed`` …; see
``--help``). Epoch e is
``ds.map(nemo, batched=True)`` after ``nemo.set_epoch(e)``: one row per expression, each
sample from its own generator seeded by (seed, epoch, ref_id, sent_id), so a sentence's
mosaic at epoch e is the one training draws for it at epoch e with the same settings.

Out comes config ``<config>-mosaics`` (``--name`` to change it), split train: the columns of
``NeMo``'s output plus ``epoch``. ``--push`` adds a card (settings, negatives, counts per
epoch, sample picture); ``--out`` writes ``<out>/<name>/train-*.parquet``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from datasets import Dataset, DatasetDict, concatenate_datasets, load_dataset

from nemo_hf.command_line import HelpFormatter, run_command
from nemo_hf.hub.cards import mining_summary, model_source
from nemo_hf.hub.dataset_repos import check_output_folder, push_mosaics, write_parquet
from nemo_hf.mining.clip import DEFAULT_CLIP
from nemo_hf.nemo.settings import NeMoSettings, settings_in_group
from nemo_hf.nemo.transform import NeMo
from nemo_hf.trainer.args import add_dataclass_flags
from nemo_hf.pretrained import OFFLINE_CLIP_HINT, check_hub_model, check_local_path
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
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


if __name__ == "__main__":  # an error that names its cause prints that, not a traceback (NEMO_HF_DEBUG=1 shows it)
    sys.exit(run_command(main))
