"""Shared by the benchmark scripts: rewrite one section of BENCHMARKS.md in place; name the processor."""

from __future__ import annotations

import platform
import re
import shutil
import subprocess
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


def machine() -> str:
    """The processor as ``lscpu`` describes it (model, CPUs, threads per core, L3, hypervisor), else :func:`cpu_name`."""
    if shutil.which("lscpu") is None:
        return cpu_name()
    fields = dict(line.split(":", 1) for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout
                  .splitlines() if ":" in line)
    fields = {key.strip(): value.strip() for key, value in fields.items()}
    parts = [fields.get("Model name", cpu_name()), f"{fields.get('CPU(s)', '?')} CPUs",
             f"{fields.get('Thread(s) per core', '?')} thread(s) per core"]
    if "L3 cache" in fields:
        parts.append(f"L3 {fields['L3 cache']}")
    if "Hypervisor vendor" in fields:
        parts.append(f"{fields['Hypervisor vendor']} guest")
    return ", ".join(parts)
