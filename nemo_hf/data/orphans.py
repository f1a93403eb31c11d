"""Worker processes that exit when the process that started them dies.

``datasets`` builds ``num_proc`` shards in a process pool, with a manager process beside it.
When the building process is killed (SIGKILL, the out-of-memory killer), nothing tells them:
they finish their shard and then wait for work forever. Inside
:func:`forks_exit_with_this_process`, every process that the calling thread forks asks the
kernel for SIGKILL on its parent's death (Linux ``prctl(PR_SET_PDEATHSIG)``), or, where
there is no such call, watches its parent from a thread. A worker started another way
(``spawn``, ``forkserver``) calls :func:`exit_with_parent` itself.

>>> import subprocess, sys
>>> code = "from nemo_hf.data.orphans import exit_with_parent; exit_with_parent(); print('armed')"
>>> subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout
'armed\\n'
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
import time
from contextlib import contextmanager
from typing import Iterator

_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>
_POLL_SECONDS = 0.2
_arming_threads: set[int] = set()  # threads whose forks are to exit with this process
_forked_by: int | None = None  # in a child: the pid of the parent that armed it, else None
_armed = False


def exit_with_parent(parent_pid: int | None = None) -> None:
    """Make this process exit as soon as ``parent_pid`` (its parent, by default the current
    one) does; exit at once if that parent is gone already. Calling it again does nothing."""
    global _armed
    parent_pid = os.getppid() if parent_pid is None else parent_pid
    if not _armed:
        _armed = True
        if not _kernel_kills_on_parent_death():
            threading.Thread(target=_watch_parent, args=(parent_pid,), daemon=True, name="exit-with-parent").start()
    if os.getppid() != parent_pid:  # the parent died before the signal was armed
        os._exit(1)


def _kernel_kills_on_parent_death() -> bool:
    """Ask Linux to SIGKILL this process when its parent thread dies; ``False`` if not Linux."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _watch_parent(parent_pid: int) -> None:
    while os.getppid() == parent_pid:
        time.sleep(_POLL_SECONDS)
    os._exit(1)


@contextmanager
def forks_exit_with_this_process() -> Iterator[None]:
    """Inside the block, the processes this thread forks exit when this process dies.

    Only this thread's forks: Linux signals the child when the *thread* that forked it
    ends, so a fork from a thread that ends early must not be armed.

    >>> with forks_exit_with_this_process():
    ...     pass
    """
    thread = threading.get_ident()
    nested = thread in _arming_threads
    _arming_threads.add(thread)
    try:
        yield
    finally:
        if not nested:
            _arming_threads.discard(thread)


def _before_fork() -> None:
    global _forked_by
    _forked_by = os.getpid() if threading.get_ident() in _arming_threads else None


def _after_fork_in_child() -> None:
    global _armed
    _arming_threads.clear()  # the child's own forks are its business
    _armed = False  # a fork keeps neither the parent-death signal nor the watching thread
    if _forked_by is not None:
        exit_with_parent(_forked_by)


if hasattr(os, "register_at_fork"):  # POSIX
    os.register_at_fork(before=_before_fork, after_in_child=_after_fork_in_child)
