"""Load untrusted pickles (RefCOCO ``refs(*).p`` files from mirrors) without running code.

A pickle is a small program: ``GLOBAL``/``STACK_GLOBAL`` opcodes import any callable and
``REDUCE`` calls it, so ``pickle.load`` on a file from a mirror can execute anything. The
refer pickles hold only lists, dicts, strings and numbers, which the unpickler builds from
opcodes alone, without ever importing a name. :func:`load_plain_pickle` therefore refuses
every import (apart from the builtin ``set``/``frozenset`` constructors, which plain-data
pickles of protocol 2 use), and no code from the file can run. That covers every opcode that
calls something (``REDUCE``, ``BUILD``, ``INST``, ``OBJ``, ``NEWOBJ``, ``NEWOBJ_EX``): what
they call can only come from an import. Persistent ids are refused too, and so are
``copyreg`` extension codes, which name an import.

Running no code is not enough for untrusted input: a memo index or a length of a few bytes
can make the C unpickler reserve gigabytes.
:func:`~nemo_hf.data.pickle_bounds.check_pickle_bounds` refuses such a file first, so the
memory an unpickling takes grows with the file's size only.

Example::

    >>> import io, pickle
    >>> load_plain_pickle(io.BytesIO(pickle.dumps([{"ref_id": 1, "sent": "left man"}])))
    [{'ref_id': 1, 'sent': 'left man'}]
"""

from __future__ import annotations

import copyreg
import io
import pickle
from typing import Any, BinaryIO

from nemo_hf.data.pickle_bounds import check_pickle_bounds

# Constructors a plain-data pickle may legitimately name. Protocol-2 pickles of sets go
# through a global; protocols < 3 name the module ``__builtin__`` (Python 2's name).
_ALLOWED_GLOBALS = {"set": set, "frozenset": frozenset}
_BUILTIN_MODULES = {"builtins", "__builtin__"}


class UnsafePickleError(pickle.UnpicklingError):
    """The pickle asked to import or call something other than plain containers."""


class _PlainDataUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if module in _BUILTIN_MODULES and name in _ALLOWED_GLOBALS:
            return _ALLOWED_GLOBALS[name]
        raise UnsafePickleError(
            f"refused to load {module}.{name}: this file may only hold plain lists, dicts, "
            "strings and numbers (a pickle that imports objects can run code)"
        )

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafePickleError("refused a persistent id: plain-data pickles never use them")


def load_plain_pickle(file: BinaryIO, encoding: str = "ASCII") -> Any:
    """Unpickle plain data from ``file`` (read whole); raise :class:`UnsafePickleError` for anything
    else, and :class:`~nemo_hf.data.pickle_bounds.OversizedPickleError` for a memo index or a
    length that no pickle of its size needs.

    ``encoding`` decodes Python-2 ``str`` objects; callers retry with ``"latin1"`` when the
    default fails on non-ASCII bytes.
    """
    data = file.read()
    check_pickle_bounds(data)
    return _unpickle(data, encoding)


def load_plain_pickle_bytes(data: bytes) -> Any:
    """Unpickle plain data from bytes, falling back to latin-1 for Python-2 strings.

    >>> load_plain_pickle_bytes(pickle.dumps({"a": (1, 2.5, None)}, protocol=2))
    {'a': (1, 2.5, None)}
    """
    check_pickle_bounds(data)
    try:
        return _unpickle(data, "ASCII")
    except UnicodeDecodeError:
        return _unpickle(data, "latin1")


def _unpickle(data: bytes, encoding: str) -> Any:
    # The C unpickler resolves an extension code from copyreg's process-wide cache, without
    # asking find_class, once any unpickler has resolved it: emptied, the code goes through
    # find_class (and is refused). It is only a cache; other unpicklers refill it.
    copyreg._extension_cache.clear()  # type: ignore[attr-defined]
    return _PlainDataUnpickler(_peekable(data), encoding=encoding).load()


def _peekable(data: bytes) -> BinaryIO:
    # The C unpickler prefetches from a file with peek(); without it (io.BytesIO) it makes
    # a Python read() call per opcode of an unframed (protocol < 4) pickle: 2x the time.
    return io.BufferedReader(io.BytesIO(data))
