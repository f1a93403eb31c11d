"""Bound the memory an untrusted pickle can make the C unpickler claim, before it reads a byte.

Refusing imports keeps a pickle from running code (:mod:`nemo_hf.data.safe_pickle`), not
from claiming memory. Two kinds of opcode arguments can make the C unpickler reserve far
more than the file holds:

- **Memo indices.** The memo is an array indexed by memo index; to store an object under
  index ``i`` the unpickler grows it to ``2 i`` slots, zeroed: 16 bytes per unit of index.
  ``BINPUT`` indices stop at 255 and ``MEMOIZE`` numbers entries one after another, but a
  ``LONG_BINPUT`` index (4 bytes) or a protocol-0 ``PUT`` index (decimal) is whatever the
  file says: 9 bytes with a ``LONG_BINPUT`` of 2**27 cost 2.1 GB and no error, one near
  2**32 would take 64 GB, a ``PUT`` more. A pickler numbers its memo from 0, one entry per
  memo opcode, so no index of a real pickle reaches the file's length in bytes.
- **Lengths.** A string, bytes, long integer or frame announces its length; the unpickler
  asks its reader for that many bytes at once, which allocates them before finding the
  file shorter.

:func:`check_pickle_bounds` refuses a memo index of the file's length or more (past the 256
a ``BINPUT`` may name) and a length past the file's end. The memo then stays under 16
times the file's size (or 4 KB), and everything else the unpickler builds grows with the
bytes that describe it.

Finding those arguments means walking the opcodes exactly as the unpickler does (an index
is only an index where an opcode starts; the same bytes inside a string are text).
``pickletools.genops`` does that in Python at ten times the cost of unpickling; here a
regular expression does it in C: one match consumes a run of opcodes whose arguments it
can skip and whose memo indices lie under a power of two no larger than the file, and
Python only looks at what ends a run: a frame, a string of 256 bytes or more (its 4- or
8-byte length is read by hand), an index between that power of two and the file's
length, or the point where the unpickler stops (``STOP``, the end of the data, an opcode
it refuses or does not know). On a RefCOCO-sized refs pickle that costs about as much as
the unpickling itself (``benchmarks/bench_refs_read.py``).

>>> import pickle
>>> check_pickle_bounds(pickle.dumps([str(n) for n in range(1000)], protocol=2))  # LONG_BINPUTs up to 1000
>>> check_pickle_bounds(b"\\x80\\x02]r\\x00\\x00\\x00\\x08.")  # [] stored under index 2**27
Traceback (most recent call last):
...
nemo_hf.data.pickle_bounds.OversizedPickleError: cannot be read: it stores an object under memo index 134217728 (at byte 3), beyond any a pickle of 9 bytes can fill, for which the unpickler would reserve 2.1 GB; the file is corrupt or crafted — download it again
"""

from __future__ import annotations

import functools
import pickle
import re
import sys

__all__ = ["OversizedPickleError", "check_pickle_bounds"]


class OversizedPickleError(pickle.UnpicklingError):
    """A pickle claims more memory than any pickle of its size can need (a memo index, or a
    length past its end); the message says which, and where."""


# Opcodes without an argument (STOP is not among them: the unpickler returns there).
_NO_ARGUMENT = b"()]}N012abdelostuR\x85\x86\x87\x88\x89\x81\x8f\x90\x91\x92\x93\x94\x98"
_ONE_BYTE, _TWO_BYTES = b"Khq\x80\x82", b"M\x83"  # BININT1, BINGET, BINPUT, PROTO, EXT1; BININT2, EXT2
_FOUR_BYTES = b"Jj\x84"  # BININT, LONG_BINGET, EXT4
_ONE_LINE, _TWO_LINES = b"ILFSVg", b"ci"  # INT, LONG, FLOAT, STRING, UNICODE, GET; GLOBAL, INST
# opcodes whose argument is a length (then that many bytes, except for FRAME): its width in bytes
_LENGTH_WIDTH = {op: width for ops, width in ((b"\x8cUC\x8a", 1), (b"XTB\x8b", 4), (b"\x8d\x8e\x96\x95", 8))
                 for op in ops}
_SIGNED_LENGTH = {ord("T"), 0x8B}  # BINSTRING, LONG4 (the unpickler refuses a negative one)
_FRAME, _LONG_BINPUT, _PUT = 0x95, ord("r"), ord("p")
_PRE_311 = sys.version_info < (3, 11)  # no possessive repeat: runs are matched 4096 opcodes at a time


def _any_of(opcodes: bytes) -> bytes:
    return b"[" + b"".join(re.escape(bytes([op])) for op in opcodes) + b"]"


def _counted(length_tail: bytes) -> bytes:
    """A length byte ``n`` (then ``length_tail``, the length's zero high bytes) and ``n`` bytes, for
    every ``n`` below 256: a regular expression cannot count, so each length is an alternative."""
    return b"(?:" + b"|".join(re.escape(bytes([n])) + length_tail + b".{%d}" % n for n in range(256)) + b")"


def _index_below(bits: int) -> bytes:
    """4 little-endian bytes of an index below ``2**bits``."""
    full, partial = divmod(bits, 8)
    if full >= 4:
        return b".{4}"
    return b".{%d}[\\x00-\\x%02x]" % (full, (1 << partial) - 1) + b"\\x00" * (3 - full)


@functools.lru_cache(maxsize=None)
def _run_of_opcodes(bits: int) -> re.Pattern[bytes]:
    """A run of opcodes that stores nothing under a memo index of ``2**bits`` or more and reads
    no length it cannot skip (longest match), stopping before anything else."""
    digits = len(str(1 << bits)) - 1  # decimal PUT indices of fewer digits lie below 2**bits
    zero_high = b"\\x00\\x00\\x00"
    alternatives = [  # the most frequent opcodes of refs pickles first, each its own literal: the
        # regex engine skips an alternative whose first byte is a literal that differs, cheaply
        b"r" + _index_below(bits), b"h.", b"X" + _counted(zero_high), b"\x8c" + _counted(b""),
        _any_of(_NO_ARGUMENT), b"q.", b"p[0-9]{1,%d}\\n" % digits if digits else b"(?!)",  # (?!): nothing
        _any_of(_ONE_LINE) + b"[^\\n]*\\n", _any_of(_ONE_BYTE) + b".", _any_of(_TWO_BYTES) + b".{2}",
        _any_of(_FOUR_BYTES) + b".{4}", b"G.{8}", _any_of(b"UC\x8a") + _counted(b""),
        _any_of(b"TB") + _counted(zero_high), _any_of(_TWO_LINES) + b"[^\\n]*\\n[^\\n]*\\n",
    ]
    # possessive (3.11+): nothing to backtrack into, so a run holds no state per opcode
    repeat = b"{0,4096}" if _PRE_311 else b"*+"
    return re.compile(b"(?:" + b"|".join(alternatives) + b")" + repeat, re.DOTALL)


def check_pickle_bounds(data: bytes) -> None:
    """Raise :class:`OversizedPickleError` if unpickling ``data`` would store an object under a
    memo index of ``len(data)`` or more (256 or more in a smaller file), or read a length past
    the end of ``data``; return otherwise.

    Only the opcodes the unpickler would execute are read: from the start to its first
    ``STOP``, or to the point where it would fail.

    >>> check_pickle_bounds(b"\\x80\\x04\\x8d" + (2**40).to_bytes(8, "little") + b"abc.")
    Traceback (most recent call last):
    ...
    nemo_hf.data.pickle_bounds.OversizedPickleError: cannot be read (the opcode at byte 2 announces 1099511627776 bytes, but the file has 4 left); the file is truncated or corrupt — download it again
    """
    size = len(data)
    run = _run_of_opcodes(max(size.bit_length() - 1, 0))  # 2**bits <= size: indices below it are fine
    position = 0
    while position < size:
        end = run.match(data, position).end()
        if end > position:  # a run (or, before Python 3.11, 4096 opcodes of it): see what ends it
            position = end
            continue
        opcode = data[position]
        if opcode == _LONG_BINPUT and position + 5 <= size:
            _check_index(int.from_bytes(data[position + 1 : position + 5], "little"), position, size)
            position += 5
        elif opcode == _PUT and (end := data.find(b"\n", position)) > 0:
            _check_index(_put_index(data[position + 1 : end], position, size), position, size)
            position = end + 1
        elif opcode in _LENGTH_WIDTH and position + 1 + _LENGTH_WIDTH[opcode] <= size:
            width = _LENGTH_WIDTH[opcode]
            length = int.from_bytes(data[position + 1 : position + 1 + width], "little",
                                    signed=opcode in _SIGNED_LENGTH)
            if length < 0:
                return  # the unpickler refuses it and goes no further
            start = position + 1 + width
            if length > size - start:
                raise OversizedPickleError(
                    f"cannot be read (the opcode at byte {position} announces {length} bytes, but the file has "
                    f"{size - start} left); the file is truncated or corrupt — download it again"
                )
            position = start if opcode == _FRAME else start + length  # a frame's bytes are opcodes
        else:  # STOP, an opcode the unpickler refuses or does not know, or one the data ends inside:
            return  # the unpickler goes no further


def _put_index(text: bytes, position: int, size: int) -> int:
    """The index of a protocol-0 ``PUT`` line, read as the unpickler reads it (``int`` of the text,
    spaces around it allowed); anything no pickler writes is refused rather than guessed at."""
    number = text.strip(b" \t\r\x0b\x0c")
    if not re.fullmatch(rb"[+-]?[0-9](?:_?[0-9])*", number):
        raise OversizedPickleError(
            f"cannot be read: its memo index {text[:30]!r} (at byte {position}) is not a decimal number; "
            "the file is corrupt or crafted — download it again"
        )
    if len(number) > 30:  # not converted: Python refuses beyond 4300 digits, and it is far too large anyway
        raise OversizedPickleError(
            f"cannot be read: it stores an object under a memo index of {len(number)} digits (at byte "
            f"{position}), beyond any a pickle of {size} bytes can fill; the file is corrupt or crafted — "
            "download it again"
        )
    return int(number)


def _check_index(index: int, position: int, size: int) -> None:
    # BINPUT's one-byte indices (16 bytes each, 4 KB in all) are let through even in a tiny file
    if index >= max(size, 256):
        reserve = 16 * index / 1e9
        raise OversizedPickleError(
            f"cannot be read: it stores an object under memo index {index} (at byte {position}), beyond any a "
            f"pickle of {size} bytes can fill, for which the unpickler would reserve "
            f"{f'{reserve:.1f} GB' if reserve < 1e6 else 'more memory than any machine has'}; the file is "
            "corrupt or crafted — download it again"
        )
