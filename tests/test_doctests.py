"""Every module of the library shows an example that runs, and every example shows what it says.

A module passes only if its examples run: one whose examples are all skipped, or that has
none, fails unless :data:`_WITHOUT_EXAMPLES` lists it with the reason. ``# doctest: +SKIP``
is refused everywhere: an example that cannot run is a claim nobody checks.
"""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import nemo_hf

# public modules allowed to show no example, each with the reason
_WITHOUT_EXAMPLES: dict[str, str] = {
    "nemo_hf.cli": "the `nemo-hf` command: its demo writes a data tree and trains, far beyond a doctest",
}

# the test kit's own examples run here too: the tests build on them
_TEST_KIT = ["tests.tiny_clipseg", "tests.tiny_cris", "tests.tiny_florence2", "tests.tiny_models",
             "tests.training_runs"]


def _public(name: str) -> bool:
    return not any(part.startswith("_") for part in name.split("."))


def _library_modules() -> list[str]:
    names = [nemo_hf.__name__]
    for info in pkgutil.walk_packages(nemo_hf.__path__, prefix="nemo_hf."):
        # ris_metric is an `evaluate` metric script, loaded by path by `evaluate.load`, not imported
        if ".ris_metric" not in info.name:
            names.append(info.name)
    return sorted(names)


def _examples(module) -> list[doctest.Example]:
    return [example for test in doctest.DocTestFinder().find(module) for example in test.examples]


@pytest.mark.parametrize("name", _library_modules() + _TEST_KIT)
def test_docstring_examples(name: str, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)  # examples that write files write them here
    module = importlib.import_module(name)
    examples = _examples(module)
    skipped = [example.source.strip() for example in examples if example.options.get(doctest.SKIP)]
    assert not skipped, f"{name} skips examples (make them run): {skipped}"
    if not examples:
        assert name in _WITHOUT_EXAMPLES or not _public(name), (
            f"{name} shows no example: add one that runs, or list it in _WITHOUT_EXAMPLES with the reason")
        return
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE | doctest.ELLIPSIS)
    assert result.failed == 0


def test_every_module_allowed_no_examples_exists_and_has_none() -> None:
    modules = _library_modules()
    for name in _WITHOUT_EXAMPLES:
        assert name in modules, f"_WITHOUT_EXAMPLES lists {name}, which is not a module of nemo_hf"
        assert not _examples(importlib.import_module(name)), f"{name} has examples now: drop it from _WITHOUT_EXAMPLES"
