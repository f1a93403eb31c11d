"""Import the repository's scripts (benchmarks/, training/) by path: they are folders of scripts, not packages.

    >>> module = load_script(BENCHMARKS / "_report.py")
    >>> callable(module.cpu_name)
    True
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parents[1]
BENCHMARKS = REPO / "benchmarks"
TRAINING = REPO / "training"


def load_script(path: Path, name: str | None = None) -> ModuleType:
    """The script at ``path`` as a module named ``name`` (default: its stem), registered in ``sys.modules``.

    Registered because dataclasses look their module up there.
    """
    spec = importlib.util.spec_from_file_location(name or path.stem, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module
