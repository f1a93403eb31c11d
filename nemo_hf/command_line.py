"""How nemo_hf's command-line tools end on an error: its message and a non-zero status, not a traceback.

``nemo-hf``, ``training/*.py`` and ``dataset_scripts/*.py`` run their ``main`` through
:func:`run_command`. An error whose message already says what is wrong and what to do — a
``ValueError`` or ``OSError`` (``FileNotFoundError``, ``FileExistsError``, the Hub client's
HTTP errors …), or any error class of nemo_hf's own (``HubPushError``, the refer-file
errors …) — is printed as ``<tool>: error: <message>`` on standard error and the tool exits
with status 1; Ctrl-C exits with 130 and one line. Anything else is a bug, and keeps its
traceback. So does every error when the environment sets ``NEMO_HF_DEBUG=1``
(:data:`DEBUG_VARIABLE`), for a report or a debugger.

Their ``--help`` shows the description as written (its command examples) and every flag's
default (:class:`HelpFormatter`). Nothing here imports more than the standard library:
``nemo-hf --help`` stays fast.

    >>> import sys
    >>> def train():
    ...     raise FileNotFoundError("config file run.yaml does not exist")
    >>> run_command(train, prog="train.py", stream=sys.stdout)
    train.py: error: config file run.yaml does not exist
    (the traceback: run again with NEMO_HF_DEBUG=1)
    1
    >>> run_command(lambda: {"train_loss": 0.1}, stream=sys.stdout)  # what main returns, unless it is a status
    0
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

__all__ = ["DEBUG_VARIABLE", "HelpFormatter", "debugging", "error_message", "run_command"]

DEBUG_VARIABLE = "NEMO_HF_DEBUG"
"""Set to ``1`` (or ``true``, ``yes``) to see the traceback of every error a tool stops on."""

# errors whose messages are written for the user: what is wrong, naming the file, flag or value
_NAMED_ERRORS: tuple[type[BaseException], ...] = (ValueError, OSError)


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """``--help`` with the description as written and each flag's default (none shown for required flags, or ones
    that default to None or off).

    >>> parser = argparse.ArgumentParser(prog="build", formatter_class=HelpFormatter)
    >>> _ = parser.add_argument("--out", default="parquet/", help="where the Parquet files go")
    >>> _ = parser.add_argument("--push", default=None, help="a Hub dataset repo to push to")
    >>> [line.strip() for line in parser.format_help().splitlines()[-2:]]
    ['--out OUT    where the Parquet files go (default: parquet/)', '--push PUSH  a Hub dataset repo to push to']
    """

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.required or action.default is None or action.default is False:
            return action.help
        return super()._get_help_string(action)


def debugging() -> bool:
    """Whether :data:`DEBUG_VARIABLE` asks for tracebacks.

    >>> debugging() == (os.environ.get("NEMO_HF_DEBUG", "").lower() in ("1", "true", "yes", "on"))
    True
    """
    return os.environ.get(DEBUG_VARIABLE, "").strip().lower() in ("1", "true", "yes", "on")


def error_message(error: BaseException) -> str | None:
    """The message to print for ``error``, or None when it is no error a user can act on (a bug: keep its traceback).

    >>> error_message(FileExistsError("out/ already holds ['final']: pass --overwrite_output_dir"))
    "out/ already holds ['final']: pass --overwrite_output_dir"
    >>> error_message(KeyError("labels")) is None
    True
    """
    own = type(error).__module__.split(".")[0] == "nemo_hf"
    if not (own or isinstance(error, _NAMED_ERRORS)):
        return None
    return str(error) or type(error).__name__


def run_command(main: Callable[[], Any], *, prog: str | None = None, stream: TextIO | None = None) -> int:
    """Run ``main()`` as a command-line tool: its status (0 unless it returns an int), or 1 after an error it names.

    ``prog`` names the tool in the message (default: the script's file name); ``stream``
    is where the message goes (default: standard error).
    """
    stream = stream if stream is not None else sys.stderr
    prog = prog or Path(sys.argv[0]).name or "nemo_hf"
    try:
        result = main()
    except KeyboardInterrupt:
        if debugging():
            raise
        print(f"\n{prog}: interrupted", file=stream)
        return 130
    except Exception as error:
        message = error_message(error)
        if message is None or debugging():
            raise
        print(f"{prog}: error: {message}", file=stream)
        print(f"(the traceback: run again with {DEBUG_VARIABLE}=1)", file=stream)
        return 1
    return result if isinstance(result, int) and not isinstance(result, bool) else 0
