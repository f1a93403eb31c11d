"""Models that ship inside the package, loadable by name with nothing to download.

Every place that takes a model name — ``NeMo(clip=…)``, ``load_clip``,
``load_referring_segmenter``, ``mine_negatives.py --clip``, the ``clip_model`` and
``model_name_or_path`` keys of the training configs — passes it through
:func:`resolve_pretrained` first, so these names work wherever a Hub id or a folder does:

================================  ==========================================================
``nemo-hf/synthetic-clip``        a small ``CLIPModel`` trained on the synthetic referring
                                  world (``training/train_clip.py``; its card, ``README.md``
                                  in the folder, gives the command and seed)
================================  ==========================================================

They are real models with real weights, made by scripts in the repository with fixed
seeds; they know the synthetic world only. Names of the form ``nemo-hf/…`` are looked up
here first; any other name goes to ``from_pretrained`` unchanged.

    >>> from pathlib import Path
    >>> (Path(resolve_pretrained("nemo-hf/synthetic-clip")) / "model.safetensors").is_file()
    True
    >>> resolve_pretrained("openai/clip-vit-base-patch16")
    'openai/clip-vit-base-patch16'
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["PRETRAINED", "resolve_pretrained"]

_HERE = Path(__file__).resolve().parent

# offline name -> folder (save_pretrained layout) inside this package
PRETRAINED: dict[str, Path] = {
    "nemo-hf/synthetic-clip": _HERE / "synthetic-clip",
}


def resolve_pretrained(name: str | os.PathLike[str]) -> str:
    """The local folder of a shipped model name; any other name or path unchanged (as ``str``)."""
    name = str(name)
    folder = PRETRAINED.get(name)
    if folder is None:
        return name
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(
            f"{name!r} ships inside nemo_hf, but {folder} has no config.json: the installed package is "
            "incomplete; reinstall nemo_hf (its package data includes nemo_hf/pretrained/*/)"
        )
    return str(folder)
