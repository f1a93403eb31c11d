"""A CLIP tokenizer made from a word list, with no file to download.

Byte-level BPE as in CLIP: every byte has a token, so any text tokenizes with no unknown
token; each listed word is also merged into a single token, so the synthetic world's
expressions cost one token a word. The small CLIP of ``training/train_clip.py`` uses one
built from the words of its training expressions (saved with the model, so loading it
needs nothing from here).

    >>> tok = word_tokenizer(["the", "red", "ring"])
    >>> tok.convert_ids_to_tokens(tok("the red ring")["input_ids"])
    ['<|startoftext|>', 'the</w>', 'red</w>', 'ring</w>', '<|endoftext|>']
    >>> tok.unk_token_id in tok("ünïcode, 42!")["input_ids"][1:-1]
    False
"""

from __future__ import annotations

from collections.abc import Iterable

from transformers import CLIPTokenizer

__all__ = ["word_tokenizer"]

_BOS, _EOS = "<|startoftext|>", "<|endoftext|>"
_END_OF_WORD = "</w>"


def _word_merges(word: str) -> list[tuple[str, str]]:
    """Left-to-right merges that turn ``word``'s characters into one end-of-word token."""
    if len(word) == 1:
        return []
    merges: list[tuple[str, str]] = []
    current = word[0]
    for i, char in enumerate(word[1:], start=1):
        piece = char + _END_OF_WORD if i == len(word) - 1 else char
        merges.append((current, piece))
        current += piece
    return merges


def _byte_alphabet() -> list[str]:
    """The 256 printable characters byte-level BPE uses for the 256 byte values."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    shifted = [256 + i for i in range(256 - len(printable))]
    others = [b for b in range(256) if b not in printable]
    mapping = dict(zip(printable + others, printable + shifted, strict=True))
    return [chr(mapping[b]) for b in range(256)]


def word_tokenizer(words: Iterable[str], model_max_length: int = 77) -> CLIPTokenizer:
    """A ``CLIPTokenizer`` whose vocabulary is the 256 bytes (alone and word-final) plus ``words``.

    ``words`` are lowercase ASCII words; the order of first appearance fixes the token ids,
    so the same list always gives the same tokenizer.
    """
    vocab: dict[str, int] = {_BOS: 0, _EOS: 1}
    for char in _byte_alphabet():
        for token in (char, char + _END_OF_WORD):
            vocab.setdefault(token, len(vocab))
    merges: list[tuple[str, str]] = []
    seen: set[tuple[str, str]] = set()
    for word in words:
        if not word.isascii() or not word.isalpha() or word != word.lower():
            raise ValueError(f"word_tokenizer takes lowercase ASCII words, got {word!r}")
        for left, right in _word_merges(word):
            if (left, right) not in seen:
                seen.add((left, right))
                merges.append((left, right))
            vocab.setdefault(left + right, len(vocab))
    return CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=model_max_length)
