"""Leave a multi-process run without Python's teardown of torch.distributed objects.

On CPU (gloo), freeing the last reference to a process group joins its worker threads
while holding the GIL; a worker still finishing a barrier needs the GIL to release a
tensor, so the process can hang forever after its work is done (seen here: the main
thread in ``~ProcessGroupGloo`` via ``~Reducer``, a gloo thread in
``~AsyncBarrierWork`` waiting for the GIL). Once every output is written and flushed,
a multi-process script exits straight away instead, at the end of ``main()`` of
``training/train.py`` and ``training/eval_ris.py`` — before ``main`` returns, since returning
frees its locals (the DDP-wrapped model and its process group), which is where the hang was
seen again.

    >>> exit_now_if_distributed()  # one process: returns, and Python's normal exit follows
"""

from __future__ import annotations

import os
import sys

from nemo_hf.mining.device import process_state


def exit_now_if_distributed() -> None:
    """``os._exit(0)`` after flushing, in a multi-process run; a no-op otherwise."""
    if process_state().num_processes > 1:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
