"""Session-wide test setup.

One local Hub-compatible server (tests/hub_server/) runs for the whole session, and
every Hugging Face client in the tests talks to it instead of the real Hub: huggingface_hub,
datasets and transformers read ``HF_ENDPOINT`` and friends once, at import time, so the
environment is set in ``pytest_configure``, before any test module (and thus any Hugging
Face library) is imported. Caches live in the session's temporary folder, never in the
user's ``~/.cache``.

Fixtures: ``local_hub`` (the running server) and ``hub_repo_id`` (a fresh ``user/name``).
The clients run as the server's user ``user`` (``HF_TOKEN``); the second user's token is
``LOCAL_HUB_OTHER_TOKEN`` (``tests.hub_server``), for tests of what one user may not do to
another's repositories. ``tests/hub_server/README.md`` lists the rules the server enforces.
When adding fixtures here, import datasets/transformers/huggingface_hub inside them, never
at the top of this file: that would fix the endpoint before ``pytest_configure`` sets it.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import tempfile
import uuid
from pathlib import Path

import pytest

from tests.hub_server import LOCAL_HUB_USER, LocalHub, start_local_hub

_HUB_KEY = pytest.StashKey[LocalHub]()
_SAVED_ENV_KEY = pytest.StashKey[dict[str, str | None]]()
_TMP_KEY = pytest.StashKey[Path]()


def pytest_configure(config: pytest.Config) -> None:
    if "huggingface_hub" in sys.modules:
        # Its endpoint constant is already fixed: tests would silently target the real Hub.
        raise pytest.UsageError(
            "huggingface_hub was imported before tests/conftest.py could point it at the local test Hub; "
            "remove the plugin or import that loads it early."
        )
    tmp = Path(tempfile.mkdtemp(prefix="nemo_hf-tests-"))
    hub = start_local_hub(tmp / "hub")
    hf_home = tmp / "hf_home"
    env: dict[str, str | None] = {
        **hub.client_env(),  # HF_ENDPOINT, HF_HUB_DISABLE_XET=1, HF_TOKEN (dummy)
        "HF_HOME": str(hf_home),
        "HF_HUB_CACHE": str(hf_home / "hub"),  # explicit: a user's HF_HUB_CACHE would win over HF_HOME
        "HF_DATASETS_CACHE": str(hf_home / "datasets"),
        "HF_HUB_DISABLE_TELEMETRY": "1",
        # Offline switches would stop the clients from reaching the local Hub, which answers fast.
        "HF_HUB_OFFLINE": None,
        "HF_DATASETS_OFFLINE": None,
        "TRANSFORMERS_OFFLINE": None,
        # Legacy cache variables that would otherwise override HF_HOME.
        "HUGGINGFACE_HUB_CACHE": None,
        "TRANSFORMERS_CACHE": None,
    }
    config.stash[_SAVED_ENV_KEY] = {name: os.environ.get(name) for name in env}
    for name, value in env.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    config.stash[_HUB_KEY] = hub
    config.stash[_TMP_KEY] = tmp


def pytest_unconfigure(config: pytest.Config) -> None:
    if _HUB_KEY in config.stash:
        config.stash[_HUB_KEY].stop()
    for name, value in config.stash.get(_SAVED_ENV_KEY, {}).items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    if _TMP_KEY in config.stash:
        shutil.rmtree(config.stash[_TMP_KEY], ignore_errors=True)


@pytest.fixture(scope="session")
def local_hub(pytestconfig: pytest.Config) -> LocalHub:
    """The session's running local Hub (``url``, ``root``, ``log_path``)."""
    return pytestconfig.stash[_HUB_KEY]


@pytest.fixture
def hub_repo_id(request: pytest.FixtureRequest) -> str:
    """A repo id no other test uses: ``user/<test name>-<random>``."""
    # Strip after cutting: a cut that ends on "-" would give "--", which repo ids may not contain.
    name = re.sub(r"[^A-Za-z0-9]+", "-", request.node.name)[:60].strip("-")
    return f"{LOCAL_HUB_USER}/{name}-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="session")
def refer_tree(tmp_path_factory: pytest.TempPathFactory):
    """A synthetic refer-format tree of every dataset (shared, read-only: copy before damaging)."""
    from nemo_hf.synthetic import make_refer_dataset

    return make_refer_dataset(tmp_path_factory.mktemp("refer") / "tree", num_images=24, seed=0)


class ReferCopy:
    """A private copy of the synthetic tree's RefCOCO files and images (``root/refcoco``,
    ``root/images``), safe to damage, with readers and writers of its two files."""

    def __init__(self, refer_tree, root: Path):
        self.root = root
        shutil.copytree(refer_tree.data_dir("refcoco"), root / "refcoco")
        shutil.copytree(refer_tree.image_dir, root / "images")
        self.refs_path, self.instances_path = root / "refcoco" / "refs(unc).p", root / "refcoco" / "instances.json"

    def refs(self) -> list[dict]:
        import pickle

        return pickle.loads(self.refs_path.read_bytes())

    def save_refs(self, refs: list[dict]) -> None:
        import pickle

        self.refs_path.write_bytes(pickle.dumps(refs, protocol=2))

    def instances(self) -> dict:
        import json

        return json.loads(self.instances_path.read_text())

    def save_instances(self, instances: dict) -> None:
        import json

        self.instances_path.write_text(json.dumps(instances))

    def load(self, cache: Path, **kwargs):
        """``load_refcoco("refcoco_unc", ...)`` of the copy into ``cache``."""
        from nemo_hf import load_refcoco

        return load_refcoco("refcoco_unc", self.root, self.root / "images", cache_dir=cache, **kwargs)


@pytest.fixture
def refer_copy(refer_tree, tmp_path: Path) -> ReferCopy:
    """A :class:`ReferCopy` of the session's synthetic tree under ``tmp_path/refer``."""
    return ReferCopy(refer_tree, tmp_path / "refer")


@pytest.fixture(scope="session")
def tiny_clipseg_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The random tiny CLIPSeg (tests/tiny_clipseg.py, seed 0) saved to a folder: a model to name by path."""
    from tests.tiny_clipseg import save_tiny_clipseg

    return save_tiny_clipseg(tmp_path_factory.mktemp("tiny_clipseg"))


@pytest.fixture(scope="session")
def tiny_cris_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The random tiny CRIS (tests/tiny_cris.py, seed 0) saved to a folder: a model to name by path."""
    from tests.tiny_cris import save_tiny_cris

    return save_tiny_cris(tmp_path_factory.mktemp("tiny_cris"))


@pytest.fixture(scope="session")
def tiny_florence2_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The random tiny Florence-2 (tests/tiny_florence2.py) saved to a folder: a model to name by path."""
    from tests.tiny_florence2 import save_tiny_florence2

    return save_tiny_florence2(tmp_path_factory.mktemp("tiny_florence2"))


@pytest.fixture(scope="session")
def published_clipseg_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The random tiny CLIPSeg (seed 0) in the file layout of CIDAS/clipseg-rd64-refined (tests/tiny_clipseg.py)."""
    from tests.tiny_clipseg import save_published_clipseg

    return save_published_clipseg(tmp_path_factory.mktemp("published_clipseg"))
