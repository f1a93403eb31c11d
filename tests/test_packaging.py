"""What a non-editable install ships: every data file the package reads at run time."""

from __future__ import annotations

import pytest
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_package_data_covers_every_non_python_file_in_the_package():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = config["tool"]["setuptools"]["package-data"]["nemo_hf"]
    shipped = {path for pattern in patterns for path in (ROOT / "nemo_hf").glob(pattern)}
    data_files = {
        path for path in (ROOT / "nemo_hf").rglob("*")
        if path.is_file() and path.suffix not in {".py", ".pyc"} and "__pycache__" not in path.parts
    }
    assert data_files, "the package has data files (model card templates at least)"
    assert data_files <= shipped, f"not in package-data: {sorted(str(p.relative_to(ROOT)) for p in data_files - shipped)}"
