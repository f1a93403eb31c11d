"""Run the local Hub-compatible test server by hand: ``python -m tests.hub_server --root DIR [--port N]``.

It prints ``PORT <n>`` once it listens on 127.0.0.1 and serves until interrupted;
``tests/hub_server/README.md`` lists the client settings that point at it.
``--user NAME=TOKEN`` (repeatable) replaces the default users ``user`` and ``other-user``.
"""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Sequence
from pathlib import Path

from .server import DEFAULT_USERS, serve


def user_and_token(spec: str) -> tuple[str, str]:
    """``NAME=TOKEN`` from the command line.

    >>> user_and_token("ann=hf_ann")
    ('ann', 'hf_ann')
    """
    name, sep, token = spec.partition("=")
    if not (sep and name and token):
        raise argparse.ArgumentTypeError(f"expected NAME=TOKEN, got {spec!r}")
    return name, token


def main(argv: Sequence[str] | None = None) -> None:
    """Parse the command line and serve until Ctrl-C (or stdin closes, with ``--exit-on-stdin-eof``)."""
    parser = argparse.ArgumentParser(
        prog="python -m tests.hub_server",
        description="A local Hub-compatible server for tests, on 127.0.0.1; prints PORT <n> once it listens.",
    )
    parser.add_argument("--root", type=Path, required=True, help="folder holding the repositories")
    parser.add_argument("--port", type=int, default=0, help="TCP port on 127.0.0.1; 0 picks a free one")
    parser.add_argument("--exit-on-stdin-eof", action="store_true", help="stop when stdin is closed")
    defaults = " ".join(f"{name}={token}" for name, token in DEFAULT_USERS.items())
    parser.add_argument(
        "--user",
        type=user_and_token,
        action="append",
        metavar="NAME=TOKEN",
        help=f"a user and the token it authenticates with; repeat for more (default: {defaults})",
    )
    args = parser.parse_args(argv)
    users = dict(args.user) if args.user else DEFAULT_USERS
    with contextlib.suppress(KeyboardInterrupt):
        serve(args.root, args.port, users=users, exit_on_stdin_eof=args.exit_on_stdin_eof)


if __name__ == "__main__":
    main()
