"""Start the local Hub-compatible test server as a subprocess and hand clients its address.

Clients read the endpoint when huggingface_hub is imported, so the environment from
:meth:`LocalHub.client_env` must be in ``os.environ`` before that import (``tests/conftest.py``
does it for the test session; here a fresh interpreter gets it)::

    >>> import os, subprocess, sys, tempfile
    >>> with start_local_hub(Path(tempfile.mkdtemp())) as hub:
    ...     code = "from huggingface_hub import whoami; print(whoami()['name'])"
    ...     env = {**os.environ, **hub.client_env()}
    ...     subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True).stdout.strip()
    'user'
"""

from __future__ import annotations

import http.client
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from .server import DEFAULT_USERS, HOST, LOCAL_HUB_USER

# The folder that holds ``tests/``: the server runs as ``python -m tests.hub_server`` from there.
_REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass
class LocalHub:
    """A running local Hub subprocess: its base ``url``, the ``process``, its storage ``root``
    and its ``users`` (user name → token).

    Use :func:`start_local_hub` to get one and :meth:`stop` (or ``with``) to end it.
    """

    url: str
    process: subprocess.Popen[bytes]
    root: Path
    users: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_USERS))

    @property
    def log_path(self) -> Path:
        """Request log and tracebacks of the server (read it when a client call fails)."""
        return self.root / "server.log"

    def client_env(self, user: str = LOCAL_HUB_USER) -> dict[str, str]:
        """Environment that points huggingface_hub, datasets and transformers at this server as ``user``.

        Must be in ``os.environ`` before the first Hugging Face import.

        >>> import tempfile
        >>> with start_local_hub(Path(tempfile.mkdtemp()), users={"ann": "hf_ann"}) as hub:
        ...     env = hub.client_env("ann")
        ...     env["HF_ENDPOINT"] == hub.url, env["HF_TOKEN"]
        (True, 'hf_ann')
        """
        return {"HF_ENDPOINT": self.url, "HF_HUB_DISABLE_XET": "1", "HF_TOKEN": self.users[user]}

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the server process (by its PID) and wait for it."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout)
        for pipe in (self.process.stdin, self.process.stdout):
            if pipe is not None:
                pipe.close()

    def __enter__(self) -> LocalHub:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def _answers(port: int, token: str) -> bool:
    connection = http.client.HTTPConnection(HOST, port, timeout=2)
    try:
        connection.request("GET", "/api/whoami-v2", headers={"Authorization": f"Bearer {token}"})
        return connection.getresponse().status == 200
    except OSError:
        return False
    finally:
        connection.close()


def start_local_hub(root: Path, *, users: Mapping[str, str] = DEFAULT_USERS, timeout: float = 30.0) -> LocalHub:
    """Start the server as a subprocess on a free port of 127.0.0.1 and wait until it answers.

    Repositories are stored under ``root`` (created if needed); the request log goes to
    ``root / "server.log"``. ``users`` maps each user name to its token (by default
    ``user`` and ``other-user``, see :data:`tests.hub_server.server.DEFAULT_USERS`).

    >>> import tempfile
    >>> hub = start_local_hub(Path(tempfile.mkdtemp()))
    >>> hub.process.poll() is None
    True
    >>> hub.stop()
    """
    if not users:
        raise ValueError("start_local_hub needs at least one user: the readiness check authenticates as one")
    root = root.resolve()  # the server runs in another working directory
    root.mkdir(parents=True, exist_ok=True)
    user_args = [arg for name, token in users.items() for arg in ("--user", f"{name}={token}")]
    with (root / "server.log").open("ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "tests.hub_server", "--root", str(root), "--exit-on-stdin-eof", *user_args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log,
            cwd=_REPO_ROOT,
        )
    hub = LocalHub(url="", process=process, root=root, users=dict(users))
    stdout = process.stdout
    assert stdout is not None
    lines: queue.Queue[bytes] = queue.Queue()
    # A thread, so that a server that never prints cannot block us past the timeout.
    threading.Thread(target=lambda: lines.put(stdout.readline()), daemon=True).start()
    deadline = time.monotonic() + timeout
    try:
        line = lines.get(timeout=timeout).decode().split()
        if len(line) != 2 or line[0] != "PORT":
            raise RuntimeError(f"unexpected first line {' '.join(line)!r}")
        port = int(line[1])
        while not _answers(port, next(iter(users.values()))):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("server does not answer")
            time.sleep(0.05)
    except (queue.Empty, RuntimeError) as e:
        hub.stop()
        log_tail = hub.log_path.read_text(errors="replace")[-2000:]
        raise RuntimeError(f"Local test Hub under {root} did not start ({e}). Log tail:\n{log_tail}") from e
    hub.url = f"http://{HOST}:{port}"
    return hub
