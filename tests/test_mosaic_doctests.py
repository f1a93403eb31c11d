"""The runnable examples in the mosaic modules' docstrings run and give what they show."""

from __future__ import annotations

import doctest
from types import ModuleType

import pytest

import nemo_hf.mosaic
from nemo_hf.mosaic import cells, compose, layout, position


@pytest.mark.parametrize("module", [nemo_hf.mosaic, layout, position, cells, compose], ids=lambda m: m.__name__)
def test_docstring_examples(module: ModuleType) -> None:
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0, f"{module.__name__} has no examples"
    assert result.failed == 0
