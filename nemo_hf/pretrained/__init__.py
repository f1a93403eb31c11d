"""Models that ship inside the package, loadable by name with nothing to download.

Every place that takes a model name — ``NeMo(clip=…)``, ``load_clip``,
``load_referring_segmenter``, ``mine_negatives.py --clip``, the ``clip_model`` and
``model_name_or_path`` keys of the training configs — passes it through
:func:`resolve_pretrained` first, so these names work wherever a Hub id or a folder does:

================================  ==========================================================
``nemo-hf/synthetic-clip``        a small ``CLIPModel`` trained on the synthetic referring
                                  world (``training/train_clip.py``; its card, ``README.md``
                                  in the folder, gives the command and seed): the miner
``nemo-hf/synthetic-clip-v1``     its first version, kept as the backbone the synthetic
                                  world's segmenters are built on (the experiment, the demo)
``nemo-hf/synthetic-segmenter``   a CLIPSeg on those towers, trained without augmentation on
                                  the fair synthetic world: the model every arm of
                                  ``nemo-hf demo`` fine-tunes
================================  ==========================================================

They are real models with real weights, made by scripts in the repository with fixed
seeds; they know the synthetic world only. Names of the form ``nemo-hf/…`` are looked up
here first; any other name goes to ``from_pretrained`` unchanged, unless it can only be
meant as a local path and is not there (:func:`check_local_path`): that is an error at
once, rather than a Hub lookup that retries for half a minute and then blames the network.
Command-line tools also call :func:`check_hub_model` on a Hub id: offline
(``HF_HUB_OFFLINE``) or with the Hub out of reach, a model that is not in the local cache
is an error at once, which says what to use instead.

    >>> from pathlib import Path
    >>> (Path(resolve_pretrained("nemo-hf/synthetic-clip")) / "model.safetensors").is_file()
    True
    >>> resolve_pretrained("openai/clip-vit-base-patch16")
    'openai/clip-vit-base-patch16'
    >>> resolve_pretrained("./outputs/run/final")
    Traceback (most recent call last):
    ...
    FileNotFoundError: './outputs/run/final' is a local path (it starts with '.'), but outputs does not exist
"""

from __future__ import annotations

import os
import socket
import warnings
from pathlib import Path
from urllib.parse import urlsplit

__all__ = ["OFFLINE_CLIP_HINT", "PRETRAINED", "HubOutOfReachError", "check_hub_model", "check_local_path",
           "hub_out_of_reach", "resolve_pretrained"]

_HERE = Path(__file__).resolve().parent

# offline name -> folder (save_pretrained layout) inside this package
PRETRAINED: dict[str, Path] = {
    "nemo-hf/synthetic-clip": _HERE / "synthetic-clip",
    "nemo-hf/synthetic-clip-v1": _HERE / "synthetic-clip-v1",
    "nemo-hf/synthetic-segmenter": _HERE / "synthetic-segmenter",
}


# what a tool that needs a CLIP can use with no network
OFFLINE_CLIP_HINT = ("Use a CLIP on disk (a folder saved with save_pretrained), or the shipped one, which needs no "
                     "network: --clip nemo-hf/synthetic-clip (a small CLIP that knows only nemo_hf's synthetic world)")


def _why_local(name: str) -> str | None:
    """Why ``name`` cannot be a Hub id (``name`` or ``owner/name``), or None if it can be one."""
    if name.startswith((".", "/", "~")):
        return f"it starts with {name[0]!r}"
    if "\\" in name:
        return "it holds a backslash"
    if Path(name).is_absolute():
        return "it is an absolute path"
    parts = name.split("/")
    if len(parts) > 2:
        return "a Hub id has at most one '/'"
    if len(parts) == 2 and Path(parts[0]).is_dir():
        return f"./{parts[0]} is a folder here; a Hub id of that form is read as a local path"
    return None


def check_local_path(name: str | os.PathLike[str]) -> None:
    """Raise ``FileNotFoundError`` for a name that can only be a local path and does not exist.

    Local: it starts with ``.``, ``/`` or ``~``, holds a backslash or more than one ``/``,
    or its first part is a folder here (``outputs/nope`` when ``./outputs`` exists). The
    error names the deepest part of the path that does exist and what it holds.

    >>> check_local_path("openai/clip-vit-base-patch16")  # a Hub id: nothing to check here
    """
    name = os.fspath(name)
    path = Path(name).expanduser()
    why = None if path.exists() else _why_local(name)
    if why is None:
        return
    found = next((parent for parent in path.parents if parent.is_dir()), None)
    if found is None or found == Path("."):
        where = f"{path.parts[0]} does not exist"
    else:
        held = sorted(p.name for p in found.iterdir() if not p.name.startswith("."))
        where = f"it does not exist; {found} holds {held[:10]}{' …' if len(held) > 10 else ''}"
    raise FileNotFoundError(f"{name!r} is a local path ({why}), but {where}")


def resolve_pretrained(name: str | os.PathLike[str]) -> str:
    """The local folder of a shipped model name; any other name or path unchanged (as ``str``).

    A name that can only be a local path must exist (:func:`check_local_path`).
    """
    name = str(name)
    folder = PRETRAINED.get(name)
    if folder is None:
        check_local_path(name)
        return name
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(
            f"{name!r} ships inside nemo_hf, but {folder} has no config.json: the installed package is "
            "incomplete; reinstall nemo_hf (its package data includes nemo_hf/pretrained/*/)"
        )
    return str(folder)


class HubOutOfReachError(ConnectionError):
    """A model named by its Hub id cannot be had here: the Hub is out of reach and the model is not cached."""


def hub_out_of_reach(timeout: float = 3.0) -> str | None:
    """Why the Hub (``HF_ENDPOINT``) cannot be reached from here now, or None when it answers a connection.

    Offline mode (``HF_HUB_OFFLINE``) is a reason too. Only a TCP connection to the Hub's
    host is tried, for at most ``timeout`` seconds: the Hub clients would retry for half a
    minute.
    """
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return "HF_HUB_OFFLINE is set"
    url = urlsplit(constants.ENDPOINT)
    host, port = url.hostname or "", url.port or (443 if url.scheme == "https" else 80)
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as error:
        return f"no answer from {host}:{port}: {error.strerror or error}"
    return None


def check_hub_model(
    name: str | os.PathLike[str], *, flag: str, instead: str, revision: str | None = None, timeout: float = 3.0,
) -> None:
    """Raise :class:`HubOutOfReachError` at once for a Hub id not to be had here, saying what to use ``instead``.

    ``name`` is what the user gave ``flag``. Shipped names and local paths pass (they need no
    network); so does a Hub id when the Hub answers, or when its ``config.json`` is in the
    local cache (the clients read the cache: at once in offline mode, else after their
    retries, which a warning announces).

    >>> check_hub_model("nemo-hf/synthetic-clip", flag="--clip", instead="")  # shipped: nothing to reach
    """
    name = os.fspath(name)
    if name in PRETRAINED or Path(name).expanduser().exists() or _why_local(name) is not None:
        return
    why = hub_out_of_reach(timeout)
    if why is None:
        return
    from huggingface_hub import constants, try_to_load_from_cache

    if isinstance(try_to_load_from_cache(name, "config.json", revision=revision), str):
        if not constants.HF_HUB_OFFLINE:
            warnings.warn(f"the Hub ({constants.ENDPOINT}) is out of reach ({why}): {flag} {name} loads from the "
                          "local cache once the Hub client has given up retrying; HF_HUB_OFFLINE=1 skips the wait",
                          stacklevel=2)
        return
    raise HubOutOfReachError(f"{flag} {name} is a Hub id, but the Hub ({constants.ENDPOINT}) is out of reach "
                             f"({why}), and {name} is not in the local cache ({constants.HF_HUB_CACHE}). "
                             f"{instead}".rstrip())
