"""Mine NeMo negatives for one split of a dataset and save it (``save_to_disk``), push it, or both.

What ``dataset_scripts/mine_negatives.py`` runs (its docstring is the ``--help`` text, with the
examples): :func:`main` parses the command line (NeMo's mining settings as flags), checks
``--out`` and the CLIP before the mining, mines with :meth:`~nemo_hf.nemo.transform.NeMo.mine`,
then saves the split atomically and/or pushes it with a card.

    >>> main(["./no-such-folder", "--clip", "nemo-hf/synthetic-clip", "--out", "mined"])
    Traceback (most recent call last):
    ...
    FileNotFoundError: './no-such-folder' is a local path ..., but no-such-folder does not exist
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

from datasets import Dataset, DatasetDict, load_dataset, load_from_disk

from nemo_hf.command_line import HelpFormatter
from nemo_hf.hub.cards import mining_summary, model_source
from nemo_hf.hub.dataset_repos import check_output_folder, push_mined_dataset
from nemo_hf.mining.clip import DEFAULT_CLIP
from nemo_hf.nemo.settings import NeMoSettings, settings_in_group
from nemo_hf.nemo.transform import NeMo
from nemo_hf.pretrained import OFFLINE_CLIP_HINT, check_hub_model, check_local_path
from nemo_hf.trainer.args import add_dataclass_flags
from nemo_hf.viz import save_mosaic_grid

_SAVE_TO_DISK_FILES = ("dataset_dict.json", "state.json")  # what save_to_disk writes at a folder's top


def _load_split(source: str, config: str | None, split: str) -> Dataset:
    """``split`` of a ``save_to_disk`` folder, or of ``config`` of a Parquet folder or a Hub dataset."""
    if any((Path(source) / name).is_file() for name in _SAVE_TO_DISK_FILES):
        loaded = load_from_disk(source)
        if isinstance(loaded, DatasetDict):
            if split not in loaded:
                raise SystemExit(f"{source} has splits {sorted(loaded)}, not {split!r}")
            return loaded[split]
        return loaded
    check_local_path(source)  # a folder that is not there is not a Hub repo either
    return load_dataset(source, config, split=split)


def _save(ds: Dataset, out: Path) -> None:
    """Write via a sibling staging folder so ``out`` appears complete or not at all (an old one replaced then)."""
    staging, old = out.with_name(out.name + ".partial"), out.with_name(out.name + ".replaced")
    shutil.rmtree(staging, ignore_errors=True)
    ds.save_to_disk(str(staging))
    if out.exists():
        os.replace(out, old)
    os.replace(staging, out)
    shutil.rmtree(old, ignore_errors=True)


def main(argv: Sequence[str] | None = None, description: str | None = None) -> int:
    """``dataset_scripts/mine_negatives.py``: parse ``argv``, run; ``description`` heads ``--help``."""
    parser = argparse.ArgumentParser(description=description or __doc__, formatter_class=HelpFormatter)
    parser.add_argument("dataset", help="Hub dataset repo id, Parquet folder (build_refcoco.py --out) or save_to_disk folder")
    parser.add_argument("--config", default=None,
                        help="config of the Hub repo or Parquet folder (e.g. refcoco_unc); the config --push writes")
    parser.add_argument("--split", default="train", help="the split to mine")
    parser.add_argument("--pool-split", default=None, help="split whose images are the candidates (default: --split)")
    parser.add_argument("--clip", default=DEFAULT_CLIP, help="CLIP checkpoint (Hub id or folder)")
    parser.add_argument("--num-proc", type=int, default=None, help="processes decoding images")
    parser.add_argument("--out", default=None, help="save the mined split here (save_to_disk)")
    parser.add_argument("--push", default=None, metavar="REPO_ID", help="push the mined split to this Hub repo")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace --out if it exists (once the new one is complete)")
    parser.add_argument("--report-dir", default=None, help="report folder (default: <out>-report beside --out)")
    # NeMo's mining settings (and the grid, which sets how many negatives a sentence needs), as train.py takes them
    names = [f.name for group in ("mining", "mechanics") for f in settings_in_group(group)] + ["grid"]
    add_dataclass_flags(parser, NeMoSettings, names)
    args = parser.parse_args(argv)
    if not args.out and not args.push:
        parser.error("nothing to do: give --out and/or --push")
    out = Path(args.out) if args.out else None
    if out is not None:  # before the mining: what would be replaced is named now
        check_output_folder(out, None, overwrite=args.overwrite)

    check_hub_model(args.clip, flag="--clip", revision=args.clip_revision, instead=OFFLINE_CLIP_HINT)  # now, not later
    ds = _load_split(args.dataset, args.config, args.split)
    pool = ds if args.pool_split in (None, args.split) else _load_split(args.dataset, args.config, args.pool_split)
    nemo = NeMo(pool, args.clip, **{name: getattr(args, name) for name in names})
    report_dir = args.report_dir or (str(out.with_name(out.name + "-report")) if out is not None else None)
    mined = nemo.mine(ds, num_proc=args.num_proc, report_dir=report_dir)
    if report_dir is not None:
        resolved = {"arguments": vars(args), "settings": nemo.settings.to_dict()}
        (Path(report_dir) / "mining_config.json").write_text(json.dumps(resolved, indent=1))
    if out is not None:
        _save(mined, out)
        print(f"saved {len(mined)} rows to {out}")
    if args.push:
        _push(mined, nemo, args)
        print(f"pushed {args.split} to {args.push}")
    return 0


def _push(mined: Dataset, nemo: NeMo, args: argparse.Namespace) -> None:
    """The mined split as ``--config``, with a card saying how it was mined and showing mosaics drawn from it."""
    config_name = args.config or "default"
    with tempfile.TemporaryDirectory(prefix="nemo_hf-samples-") as folder:
        shown = nemo.attach(mined.select(range(min(8, len(mined)))))
        picture = save_mosaic_grid(shown, Path(folder) / "samples.png")
        mining = mining_summary(settings=nemo.settings.to_dict(), clip=model_source(args.clip, args.clip_revision),
                                seed=None, report=nemo.last_report, picture=f"{config_name}/samples.png",
                                mined_split=args.split, pool_split=args.pool_split or args.split)
        push_mined_dataset(DatasetDict({args.split: mined}), args.push, config_name, source_config=config_name,
                           mining=mining, picture=picture)
