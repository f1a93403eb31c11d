"""Shared by the benchmark scripts: rewrite one section of BENCHMARKS.md in place; name the processor."""

from __future__ import annotations

import platform
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


def cpu_name() -> str:
    """The processor's model name (machines of one kind differ between sessions), else its architecture."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()
