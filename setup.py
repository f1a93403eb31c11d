"""Packages for setuptools; everything else is in pyproject.toml.

The card templates live in the repository's top-level ``model_cards/`` (the layout keeps one
folder per job) and ship inside the wheel as ``nemo_hf/model_cards/``, where
``nemo_hf.hub`` reads them; a source checkout (editable install) reads them in place.
"""

from setuptools import find_packages, setup

setup(
    packages=[*find_packages(include=["nemo_hf*"]), "nemo_hf.model_cards"],
    package_dir={"nemo_hf.model_cards": "model_cards"},
)
