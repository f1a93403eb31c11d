"""The package's layers (``pyproject.toml``'s import-linter contracts): each part imports only the parts below it.

cli | dataset_tools → experiment → trainer → hub → modeling → metrics | nemo → mining → mosaic → synthetic → data →
pretrained | viz | version; and no part imports the package root, whose names are lazy shortcuts for users
(library modules import from the module that defines a name, by its absolute name).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_import_contracts_hold() -> None:
    run = subprocess.run([sys.executable, "-c", "from importlinter.cli import lint_imports_command; "
                          "lint_imports_command()"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert "1 kept, 0 broken" in run.stdout


def test_library_modules_import_names_where_they_are_defined_not_from_the_package_root() -> None:
    """``from nemo_hf import X`` resolves X lazily (``__getattr__``), which type checkers cannot follow."""
    offenders = []
    for path in sorted((ROOT / "nemo_hf").rglob("*.py")):
        if path == ROOT / "nemo_hf" / "__init__.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module == "nemo_hf" and node.level == 0:
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
            if isinstance(node, ast.ImportFrom) and node.level > 0:
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno} (relative import)")
            if isinstance(node, ast.Import) and any(alias.name == "nemo_hf" for alias in node.names):
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert offenders == []


def test_importing_the_package_root_is_cheap_and_changes_no_import_machinery() -> None:
    code = ("import sys; finders = list(sys.meta_path); import nemo_hf; "
            "assert sys.meta_path == finders, 'import hook installed'; "
            "heavy = [m for m in ('torch', 'transformers', 'datasets', 'huggingface_hub') if m in sys.modules]; "
            "assert not heavy, heavy; print(nemo_hf.__version__)")
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
