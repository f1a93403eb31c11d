"""Run the local Hub-compatible test server by hand: ``python -m tests.hub_server --root DIR [--port N]``.

It prints ``PORT <n>`` once it listens on 127.0.0.1 and serves until interrupted;
``tests/hub_server/README.md`` lists the client settings that point at it.
"""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Sequence
from pathlib import Path

from .server import serve


def main(argv: Sequence[str] | None = None) -> None:
    """Parse the command line and serve until Ctrl-C (or stdin closes, with ``--exit-on-stdin-eof``)."""
    parser = argparse.ArgumentParser(
        prog="python -m tests.hub_server",
        description="A local Hub-compatible server for tests, on 127.0.0.1; prints PORT <n> once it listens.",
    )
    parser.add_argument("--root", type=Path, required=True, help="folder holding the repositories")
    parser.add_argument("--port", type=int, default=0, help="TCP port on 127.0.0.1; 0 picks a free one")
    parser.add_argument("--exit-on-stdin-eof", action="store_true", help="stop when stdin is closed")
    args = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        serve(args.root, args.port, exit_on_stdin_eof=args.exit_on_stdin_eof)


if __name__ == "__main__":
    main()
