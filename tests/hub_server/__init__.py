"""A local, Hugging Face Hub-compatible HTTP server: the test suite's stand-in for the Hub.

``store`` keeps repositories, commits and blobs on disk; ``access`` decides who may read
and write what; ``server`` speaks the Hub's HTTP protocol over them; ``process`` starts it
as a subprocess for the tests; ``python -m tests.hub_server`` runs it by hand.
``tests/hub_server/README.md`` documents all of it.
"""

from .process import LocalHub, start_local_hub
from .server import LOCAL_HUB_OTHER_TOKEN, LOCAL_HUB_OTHER_USER, LOCAL_HUB_TOKEN, LOCAL_HUB_USER

__all__ = [
    "LOCAL_HUB_OTHER_TOKEN",
    "LOCAL_HUB_OTHER_USER",
    "LOCAL_HUB_TOKEN",
    "LOCAL_HUB_USER",
    "LocalHub",
    "start_local_hub",
]
