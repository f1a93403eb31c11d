"""Shared by the benchmark scripts: rewrite one section of BENCHMARKS.md in place."""

from __future__ import annotations

import re
from pathlib import Path


def write_section(path: Path, name: str, section: str) -> None:
    """Replace (or append) the ``## {name}`` section, leaving every other section as it is."""
    text = path.read_text(encoding="utf-8") if path.exists() else "# Benchmarks\n"
    pattern = re.compile(rf"^## {re.escape(name)}\n.*?(?=^## |\Z)", re.MULTILINE | re.DOTALL)
    if pattern.search(text):
        text = pattern.sub(lambda _: section + "\n", text, count=1)
    else:
        text = text.rstrip("\n") + "\n\n" + section
    path.write_text(text.rstrip("\n") + "\n", encoding="utf-8")
