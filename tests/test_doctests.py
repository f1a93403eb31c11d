"""Every runnable example in the library's docstrings runs and shows what it says."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import nemo_hf

# modules whose examples need something a test machine lacks (none today); listed, not skipped silently
_NOT_RUNNABLE: set[str] = set()


def _modules() -> list[str]:
    names = [nemo_hf.__name__]
    for info in pkgutil.walk_packages(nemo_hf.__path__, prefix="nemo_hf."):
        if info.name not in _NOT_RUNNABLE and ".ris_metric" not in info.name:
            names.append(info.name)
    return sorted(names)


@pytest.mark.parametrize("name", _modules())
def test_docstring_examples(name: str, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)  # examples that write files write them here
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE | doctest.ELLIPSIS)
    assert result.failed == 0
