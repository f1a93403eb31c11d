"""The local test Hub enforces what the Hub enforces: tokens, private repositories, valid ids.

Hub tests of private pushes and token handling mean something only if the server refuses
what the Hub refuses. The clients are the real huggingface_hub and datasets, with the suite's
user (``HF_TOKEN``), the second user's token, or none (``token=False``); the attacks are raw
HTTP, because the clients validate ids and paths before they send anything. Every attack is
checked on the filesystem: nothing outside the server's root is read or written.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import pytest

from tests.hub_server import (
    LOCAL_HUB_OTHER_TOKEN,
    LOCAL_HUB_OTHER_USER,
    LOCAL_HUB_TOKEN,
    LOCAL_HUB_USER,
    LocalHub,
    start_local_hub,
)

pytestmark = pytest.mark.hub

_OWNER = {"Authorization": f"Bearer {LOCAL_HUB_TOKEN}"}
_OTHER = {"Authorization": f"Bearer {LOCAL_HUB_OTHER_TOKEN}"}


def _request(
    hub: LocalHub, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    """``(status, headers, body)`` of one raw request; ``path`` is sent exactly as given."""
    url = urlsplit(hub.url)
    connection = http.client.HTTPConnection(url.hostname, url.port, timeout=10)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


def _other_repo_id(hub_repo_id: str) -> str:
    return f"{LOCAL_HUB_OTHER_USER}/{hub_repo_id.split('/')[1]}"


# --- tokens -----------------------------------------------------------------------


def test_whoami_names_the_tokens_user_and_refuses_unknown_tokens(local_hub: LocalHub) -> None:
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError

    assert HfApi().whoami()["name"] == LOCAL_HUB_USER
    assert HfApi(token=LOCAL_HUB_OTHER_TOKEN).whoami()["name"] == LOCAL_HUB_OTHER_USER
    with pytest.raises(HfHubHTTPError) as refused:
        HfApi(token="hf_not_a_token_of_this_hub").whoami()
    assert refused.value.response.status_code == 401
    assert _request(local_hub, "GET", "/api/whoami-v2")[0] == 401
    # As on the Hub, an unknown token is refused even where no token is needed.
    status, headers, _ = _request(local_hub, "GET", "/api/validate-yaml", headers={"Authorization": "Bearer nope"})
    assert (status, headers["X-Error-Message"]) == (401, "Invalid credentials in Authorization header")


def test_writes_need_a_token_and_the_owners_one(local_hub: LocalHub, hub_repo_id: str) -> None:
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError

    owner, other, anonymous = HfApi(), HfApi(token=LOCAL_HUB_OTHER_TOKEN), HfApi(token=False)
    owner.create_repo(hub_repo_id)
    owner.upload_file(path_or_fileobj=b"v1\n", path_in_repo="notes.txt", repo_id=hub_repo_id)
    owner.create_branch(hub_repo_id, branch="dev")
    before = owner.list_repo_refs(hub_repo_id)
    another_id = f"{hub_repo_id}-second"

    def writes(api: HfApi) -> dict[str, Callable[[], Any]]:
        return {
            "create repo": lambda: api.create_repo(another_id),
            "regular file": lambda: api.upload_file(path_or_fileobj=b"x\n", path_in_repo="n.txt", repo_id=hub_repo_id),
            "lfs file": lambda: api.upload_file(path_or_fileobj=b"\0w", path_in_repo="w.bin", repo_id=hub_repo_id),
            "create branch": lambda: api.create_branch(hub_repo_id, branch="feature"),
            "delete branch": lambda: api.delete_branch(hub_repo_id, branch="dev"),
        }

    for api, status in ((anonymous, 401), (other, 403)):
        for what, write in writes(api).items():
            with pytest.raises(HfHubHTTPError) as refused:
                write()
            assert refused.value.response.status_code == status, what

    assert not owner.repo_exists(another_id)
    assert owner.list_repo_refs(hub_repo_id) == before
    assert owner.list_repo_files(hub_repo_id) == [".gitattributes", "notes.txt"]
    # The second user writes freely in its own namespace.
    other.create_repo(_other_repo_id(hub_repo_id))
    other.upload_file(path_or_fileobj=b"\0w", path_in_repo="w.bin", repo_id=_other_repo_id(hub_repo_id))
    assert HfApi().list_repo_commits(_other_repo_id(hub_repo_id))[0].authors == [LOCAL_HUB_OTHER_USER]


def test_lfs_endpoints_need_the_owners_token_or_a_signed_link(local_hub: LocalHub, hub_repo_id: str) -> None:
    from huggingface_hub import HfApi

    HfApi().create_repo(hub_repo_id)
    content = b"\0large object"
    oid = hashlib.sha256(content).hexdigest()
    batch = json.dumps({"operation": "upload", "objects": [{"oid": oid, "size": len(content)}]}).encode()
    batch_path = f"/{hub_repo_id}.git/info/lfs/objects/batch"
    assert _request(local_hub, "POST", batch_path, batch)[0] == 401
    assert _request(local_hub, "POST", batch_path, batch, _OTHER)[0] == 403
    status, _, answer = _request(local_hub, "POST", batch_path, batch, _OWNER)
    assert status == 200
    upload = urlsplit(json.loads(answer)["objects"][0]["actions"]["upload"]["href"])

    other_oid = hashlib.sha256(b"\0another object").hexdigest()
    signed_for_other = upload.query  # a link signed for one object does not upload another
    assert _request(local_hub, "PUT", f"/_lfs/models/{hub_repo_id}/{other_oid}?{signed_for_other}", b"\0x")[0] == 401
    assert _request(local_hub, "PUT", upload.path, content, _OWNER)[0] == 401  # unsigned, even with a token
    assert not (local_hub.root / "blobs" / oid[:2] / oid).exists()
    assert _request(local_hub, "PUT", f"{upload.path}?{upload.query}", content)[0] == 200  # as the client sends it
    verify = json.dumps({"oid": oid, "size": len(content)}).encode()
    assert _request(local_hub, "POST", f"{upload.path}/verify", verify)[0] == 401
    assert _request(local_hub, "POST", f"{upload.path}/verify", verify, _OWNER)[0] == 200


def test_user_names_and_tokens_are_configurable(tmp_path: Path) -> None:
    with start_local_hub(tmp_path / "hub", users={"ann": "hf_ann_token"}) as hub:
        status, _, body = _request(hub, "GET", "/api/whoami-v2", headers={"Authorization": "Bearer hf_ann_token"})
        assert (status, json.loads(body)["name"]) == (200, "ann")
        assert _request(hub, "GET", "/api/whoami-v2", headers=_OWNER)[0] == 401  # the default users are gone
        assert hub.client_env("ann")["HF_TOKEN"] == "hf_ann_token"


# --- private repositories -----------------------------------------------------------


def test_private_repo_is_invisible_to_anonymous_and_other_users(
    local_hub: LocalHub, hub_repo_id: str, tmp_path: Path
) -> None:
    from huggingface_hub import HfApi, hf_hub_download
    from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError

    owner = HfApi()
    owner.create_repo(hub_repo_id, private=True)
    owner.upload_file(path_or_fileobj=b"private notes\n", path_in_repo="notes.txt", repo_id=hub_repo_id)
    owner.upload_file(path_or_fileobj=b"\0private weights", path_in_repo="w.bin", repo_id=hub_repo_id)
    assert owner.repo_info(hub_repo_id).private is True
    assert Path(hf_hub_download(hub_repo_id, "notes.txt", cache_dir=tmp_path / "owner")).read_bytes() == (
        b"private notes\n"
    )

    for token, write_status in ((False, 401), (LOCAL_HUB_OTHER_TOKEN, 404)):
        api = HfApi(token=token)
        assert not api.repo_exists(hub_repo_id)
        reads: dict[str, Callable[[], Any]] = {
            "info": lambda: api.repo_info(hub_repo_id),
            "tree": lambda: list(api.list_repo_tree(hub_repo_id, recursive=True)),
            "paths-info": lambda: api.get_paths_info(hub_repo_id, ["notes.txt"]),
            "refs": lambda: api.list_repo_refs(hub_repo_id),
            "commits": lambda: api.list_repo_commits(hub_repo_id),
            "resolve": lambda: hf_hub_download(hub_repo_id, "w.bin", token=token, cache_dir=tmp_path / str(token)),
        }
        for what, read in reads.items():
            with pytest.raises(RepositoryNotFoundError):
                read()
        # A write without a token is refused before the repository is looked at; the other
        # user's write finds no repository, and so learns nothing either.
        with pytest.raises(HfHubHTTPError) as refused:
            api.upload_file(path_or_fileobj=b"x\n", path_in_repo="x.txt", repo_id=hub_repo_id)
        assert refused.value.response.status_code == write_status

    # To anyone but its owner, a private repository answers exactly like one that does not exist.
    missing_id = f"{LOCAL_HUB_USER}/{'m' * len(hub_repo_id.split('/')[1])}"
    for path in ("/api/models/{}", "/api/models/{}/tree/main", "/{}/resolve/main/notes.txt"):
        for headers in ({}, _OTHER):
            private = _request(local_hub, "GET", path.format(hub_repo_id), headers=headers)
            missing = _request(local_hub, "GET", path.format(missing_id), headers=headers)
            assert private[0] == missing[0] == 404
            assert private[1]["X-Error-Code"] == missing[1]["X-Error-Code"] == "RepoNotFound"
            assert private[2].replace(hub_repo_id.encode(), missing_id.encode()) == missing[2]


def test_private_dataset_push_and_load_need_the_owners_token(hub_repo_id: str, tmp_path: Path) -> None:
    from datasets import Dataset, load_dataset
    from datasets.exceptions import DatasetNotFoundError

    repo_id = _other_repo_id(hub_repo_id)
    rows = {"ref_id": [3, 1, 2], "sentence": ["left dog", "red car", "bowl"]}
    Dataset.from_dict(rows).push_to_hub(repo_id, private=True, token=LOCAL_HUB_OTHER_TOKEN)
    # HF_TOKEN (the suite's user) is not the owner; no token at all is not either.
    for token in (None, False):
        with pytest.raises(DatasetNotFoundError):
            load_dataset(repo_id, split="train", token=token, cache_dir=str(tmp_path / f"cache-{token}"))
    loaded = load_dataset(repo_id, split="train", token=LOCAL_HUB_OTHER_TOKEN, cache_dir=str(tmp_path / "owner"))
    assert loaded.to_dict() == rows


# --- commits and revisions ------------------------------------------------------------


def _commit_body(*lines: dict[str, Any] | bytes) -> bytes:
    header = {"key": "header", "value": {"summary": "attempt", "description": ""}}
    encoded = [line if isinstance(line, bytes) else json.dumps(line).encode() for line in (header, *lines)]
    return b"\n".join(encoded)


def _file(path: str, content: bytes = b"new\n") -> dict[str, Any]:
    return {"key": "file", "value": {"path": path, "content": base64.b64encode(content).decode(), "encoding": "base64"}}


def _lfs_file(path: str, oid: str, size: int) -> dict[str, Any]:
    return {"key": "lfsFile", "value": {"path": path, "oid": oid, "size": size}}


def _failing_commits(stored_oid: str) -> dict[str, tuple[dict[str, Any] | bytes, ...]]:
    """Commit payloads whose first line is fine and whose second fails: nothing may land."""
    never_uploaded = hashlib.sha256(b"never uploaded").hexdigest()
    return {
        "lfs object never uploaded": (_file("new.txt"), _lfs_file("w.bin", never_uploaded, 3)),
        "lfs size that is not the object's": (_file("new.txt"), _lfs_file("w.bin", stored_oid, 999)),
        "malformed line": (_file("new.txt"), b"{not json"),
        "unknown operation": (_file("new.txt"), {"key": "renameFile", "value": {"path": "a"}}),
        "file where a folder is needed": (_file("new.txt"), _file("new.txt/inside.txt")),
        "delete a missing file": (_file("new.txt"), {"key": "deletedFile", "value": {"path": "missing.txt"}}),
        "path outside the repository": (_file("new.txt"), _file("../../escape.txt")),
        # b64decode without validation read "!!not base64" as b"": an empty file was committed
        "invalid base64": (_file("new.txt"), {"key": "file", "value": {"path": "bad.txt", "content": "!!not base64",
                                                                      "encoding": "base64"}}),
        "content that is not text": (_file("new.txt"), {"key": "file", "value": {"path": "bad.txt", "content": 7}}),
        "a line nested 100,000 deep": (_file("new.txt"), b"[" * 100_000 + b"]" * 100_000),  # was a 500
    }


def test_a_commit_that_fails_midway_leaves_main_unchanged(local_hub: LocalHub, hub_repo_id: str) -> None:
    from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi
    from huggingface_hub.errors import EntryNotFoundError

    api = HfApi()
    api.create_repo(hub_repo_id)
    stored = b"\0stored object"
    api.upload_file(path_or_fileobj=stored, path_in_repo="kept.bin", repo_id=hub_repo_id)

    def state() -> tuple[Any, ...]:
        files = sorted((f.path, f.blob_id) for f in api.list_repo_tree(hub_repo_id, recursive=True))
        return api.list_repo_refs(hub_repo_id), [c.commit_id for c in api.list_repo_commits(hub_repo_id)], files

    before = state()
    # Through the real client: the large file is uploaded, then the commit is refused.
    with pytest.raises(EntryNotFoundError):
        api.create_commit(
            hub_repo_id,
            [CommitOperationAdd("w.bin", b"\0weights"), CommitOperationDelete("missing.txt")],
            commit_message="half",
        )
    assert state() == before

    commit = f"/api/models/{hub_repo_id}/commit/main"
    for what, lines in _failing_commits(hashlib.sha256(stored).hexdigest()).items():
        status, _, body = _request(local_hub, "POST", commit, _commit_body(*lines), _OWNER)
        assert 400 <= status < 500 and json.loads(body)["error"], what
        assert state() == before, what
    status, _, body = _request(local_hub, "POST", commit, b"", _OWNER)
    assert status == 400 and "header" in json.loads(body)["error"]


def test_a_commit_id_pins_the_files_of_that_commit(hub_repo_id: str, tmp_path: Path) -> None:
    from huggingface_hub import HfApi, hf_hub_download, snapshot_download

    api = HfApi()
    api.create_repo(hub_repo_id)
    first = api.upload_file(path_or_fileobj=b"\0v1", path_in_repo="w.bin", repo_id=hub_repo_id).oid
    api.upload_file(path_or_fileobj=b"\0v2", path_in_repo="w.bin", repo_id=hub_repo_id)
    api.upload_file(path_or_fileobj=b"later\n", path_in_repo="later.txt", repo_id=hub_repo_id)

    assert Path(hf_hub_download(hub_repo_id, "w.bin", cache_dir=tmp_path)).read_bytes() == b"\0v2"
    assert Path(hf_hub_download(hub_repo_id, "w.bin", revision=first, cache_dir=tmp_path)).read_bytes() == b"\0v1"
    pinned = Path(snapshot_download(hub_repo_id, revision=first, cache_dir=tmp_path / "snapshot"))
    assert sorted(p.name for p in pinned.iterdir()) == [".gitattributes", "w.bin"]
    assert api.repo_info(hub_repo_id, revision=first).sha == first


def test_branches_are_deleted_by_their_owner_but_main_stays(hub_repo_id: str) -> None:
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError

    api = HfApi()
    api.create_repo(hub_repo_id)
    api.create_branch(hub_repo_id, branch="dev")
    api.delete_branch(hub_repo_id, branch="dev")
    assert [ref.name for ref in api.list_repo_refs(hub_repo_id).branches] == ["main"]
    with pytest.raises(HfHubHTTPError) as refused:
        api.delete_branch(hub_repo_id, branch="main")
    assert refused.value.response.status_code == 403


# --- ids and paths that try to leave the server's root ------------------------------------

_SECRET = b"bait content that must never be served"
_BAIT_FILE = "bait-marker.txt"


def _outside_root(hub: LocalHub) -> dict[str, tuple[bool, int, int]]:
    """Every entry of the folder holding the server's root, except the root: (is dir, size, mtime)."""
    entries = {}
    for folder, dirs, files in os.walk(hub.root.parent):
        if Path(folder) == hub.root.parent:
            dirs[:] = [d for d in dirs if hub.root.parent / d != hub.root]
        for name in dirs + files:
            stat = (Path(folder) / name).lstat()
            entries[str(Path(folder, name))] = (name in dirs, stat.st_size, stat.st_mtime_ns)
    return entries


@pytest.fixture
def bait(local_hub: LocalHub, hub_repo_id: str) -> Iterator[str]:
    """The name of a complete model repository *outside* the server's root, beside it.

    A copy of a real repository (its file holds ``_SECRET``), so a server that followed a
    traversal would find a valid repository there and serve or change it.
    """
    from huggingface_hub import HfApi

    HfApi().create_repo(hub_repo_id)
    HfApi().upload_file(path_or_fileobj=_SECRET, path_in_repo=_BAIT_FILE, repo_id=hub_repo_id)
    name = f"bait-{uuid.uuid4().hex[:8]}"
    shutil.copytree(local_hub.root / "repos" / "models" / hub_repo_id, local_hub.root.parent / name)
    yield name
    shutil.rmtree(local_hub.root.parent / name)


def _repo_id_attacks(hub: LocalHub, bait: str) -> dict[str, tuple[str, str]]:
    """URL path segments (namespace, name) that decode to an id reaching ``bait`` beside the root.

    A repository lives at ``<root>/repos/<type>s/<namespace>/<name>``: three levels up from
    ``<type>s`` is the root's parent.
    """
    up3 = "..%2F..%2F.."
    return {
        "encoded slash": (up3, bait),
        "lowercase encoded slash": (up3.replace("%2F", "%2f"), bait),
        "encoded dots": ("%2e%2e%2f%2e%2e%2f%2e%2e", bait),
        "encoded in the name": (LOCAL_HUB_USER, f"..%2F{up3}%2F{bait}"),
        "double encoding": ("%252e%252e%252f%252e%252e%252f%252e%252e", bait),
        "backslashes": ("..%5C..%5C..", bait),
        "absolute path": (quote(str(hub.root.parent), safe=""), bait),
        "literal dot segments": ("..", ".."),
        "nul byte": (f"{LOCAL_HUB_USER}%00", bait),
    }


def _requests_to(repo_type: str, ns: str, name: str) -> list[tuple[str, str, bytes]]:
    """One request of every kind the server routes to a repository: reads, then writes."""
    api = f"/api/{repo_type}s/{ns}/{name}"
    git = f"/{ns}/{name}" if repo_type == "model" else f"/datasets/{ns}/{name}"
    oid = hashlib.sha256(b"attack").hexdigest()
    lfs = json.dumps({"operation": "upload", "objects": [{"oid": oid, "size": 6}]}).encode()
    preupload = json.dumps({"files": [{"path": "x.txt", "sample": "", "size": 0}]}).encode()
    return [
        ("GET", api, b""),
        ("GET", f"{api}/revision/main", b""),
        ("GET", f"{api}/tree/main?recursive=1", b""),
        ("POST", f"{api}/paths-info/main", f"paths={_BAIT_FILE}".encode()),
        ("GET", f"{api}/refs", b""),
        ("GET", f"{api}/commits/main", b""),
        ("GET", f"{git}/resolve/main/{_BAIT_FILE}", b""),
        ("HEAD", f"{git}/resolve/main/{_BAIT_FILE}", b""),
        ("POST", f"{api}/preupload/main", preupload),
        ("POST", f"{api}/commit/main", _commit_body(_file("planted.txt"))),
        ("POST", f"{api}/branch/planted", b"{}"),
        ("DELETE", f"{api}/branch/main", b""),
        ("POST", f"{git}.git/info/lfs/objects/batch", lfs),
        ("POST", f"/_lfs/{repo_type}s/{ns}/{name}/{oid}/verify", json.dumps({"oid": oid, "size": 6}).encode()),
        ("PUT", f"/_lfs/{repo_type}s/{ns}/{name}/{oid}", b"attack"),
    ]


@pytest.mark.parametrize(
    "attack",
    ["encoded slash", "lowercase encoded slash", "encoded dots", "encoded in the name", "double encoding",
     "backslashes", "absolute path", "literal dot segments", "nul byte"],
)  # fmt: skip
def test_repo_ids_that_leave_the_root_are_refused(local_hub: LocalHub, bait: str, attack: str) -> None:
    ns, name = _repo_id_attacks(local_hub, bait)[attack]
    before = _outside_root(local_hub)
    for repo_type in ("model", "dataset"):
        for method, path, body in _requests_to(repo_type, ns, name):
            status, _, answer = _request(local_hub, method, path, body, _OWNER)
            # The upload link's signature is checked first: an attacker cannot have one.
            assert status == (401 if method == "PUT" else 400), (method, path, status, answer)
            assert method == "HEAD" or json.loads(answer)["error"], (method, path)
            assert _SECRET not in answer and _BAIT_FILE.encode() not in answer, (method, path)
    assert _outside_root(local_hub) == before


def test_a_symlink_out_of_the_root_is_not_followed(local_hub: LocalHub, bait: str, hub_repo_id: str) -> None:
    # A valid id whose folder links outside: only the resolved-path check stands in the way.
    link = local_hub.root / "repos" / "models" / f"{hub_repo_id}-link"
    link.symlink_to(local_hub.root.parent / bait, target_is_directory=True)
    before = _outside_root(local_hub)
    try:
        for method, path, body in _requests_to("model", *f"{hub_repo_id}-link".split("/")):
            status, _, answer = _request(local_hub, method, path, body, _OWNER)
            assert status == (401 if method == "PUT" else 400), (method, path, status, answer)
            assert _SECRET not in answer and _BAIT_FILE.encode() not in answer, (method, path)
    finally:
        link.unlink()
    assert _outside_root(local_hub) == before


@pytest.mark.parametrize(
    "payload",
    [
        {"name": "x", "organization": "../../../planted"},
        {"name": "../../../../planted"},
        {"name": "planted", "organization": "/tmp"},
        {"name": "..\\..\\planted"},
        {"name": "a--b"},
        {"name": ".hidden"},
        {"name": "x.git"},
        {"name": "n" * 97},
        {"name": "caf\u00e9"},
        {"name": "a/b"},
        {"name": None},
    ],
)
def test_invalid_repo_ids_cannot_be_created(local_hub: LocalHub, payload: dict[str, Any]) -> None:
    before = _outside_root(local_hub)
    status, _, answer = _request(local_hub, "POST", "/api/repos/create", json.dumps(payload).encode(), _OWNER)
    error = json.loads(answer)["error"]
    assert status == 400 and ("Invalid repository id" in error or "must be strings" in error), (status, error)
    assert _outside_root(local_hub) == before
    assert not list((local_hub.root / "repos").rglob("*planted*"))


@pytest.mark.parametrize(
    "path", ["../../escape.txt", "/absolute.txt", "a/../../b.txt", "a\\..\\b.txt", "./x.txt", "a//b.txt", ".git/config"]
)
def test_commit_paths_that_leave_the_repository_are_refused(local_hub: LocalHub, hub_repo_id: str, path: str) -> None:
    from huggingface_hub import HfApi

    api = HfApi()
    api.create_repo(hub_repo_id)
    head = api.repo_info(hub_repo_id).sha
    status, _, answer = _request(
        local_hub, "POST", f"/api/models/{hub_repo_id}/commit/main", _commit_body(_file(path)), _OWNER
    )
    assert status == 400 and "Invalid path" in json.loads(answer)["error"]
    preupload = json.dumps({"files": [{"path": path, "sample": "", "size": 0}]}).encode()
    assert _request(local_hub, "POST", f"/api/models/{hub_repo_id}/preupload/main", preupload, _OWNER)[0] == 400
    assert api.repo_info(hub_repo_id).sha == head


@pytest.mark.parametrize(
    "path",
    ["..%2F..%2F..%2F..%2Frepo.json", "../../repo.json", "%2e%2e/%2e%2e/%2e%2e/%2e%2e/repo.json",
     "%252e%252e%252f%252e%252e%252frepo.json", "..%5C..%5Crepo.json", "sub/../../x"],
)  # fmt: skip
def test_file_paths_that_leave_the_repository_are_not_served(
    local_hub: LocalHub, bait: str, hub_repo_id: str, path: str
) -> None:
    for method, url in (
        ("GET", f"/{hub_repo_id}/resolve/main/{path}"),
        ("HEAD", f"/{hub_repo_id}/resolve/main/{path}"),
        ("GET", f"/api/models/{hub_repo_id}/tree/main/{path}"),
        ("POST", f"/api/models/{hub_repo_id}/paths-info/main"),
    ):
        body = f"paths={path}".encode() if method == "POST" else None
        status, _, answer = _request(local_hub, method, url, body, _OWNER)
        # Refused, or (once decoded, a literal name with "%" in it) not found.
        assert status in (400, 404) or (method, status, answer) == ("POST", 200, b"[]"), (method, url, status)
        assert b"branches" not in answer and _SECRET not in answer, (method, url)


# --- malformed and oversized requests -----------------------------------------------------


def _raw(hub: LocalHub, request: bytes, timeout: float = 10) -> tuple[int, dict[str, str], bytes]:
    """Send ``request`` as it is over a new connection; ``(status, headers, body)`` of the answer.

    The socket times out after ``timeout`` seconds, so a server that waits for a body that never
    comes fails the test instead of hanging it; a dropped connection is status 0.
    """
    import socket

    url = urlsplit(hub.url)
    with socket.create_connection((url.hostname, url.port), timeout=timeout) as connection:
        connection.sendall(request)
        received = b""
        try:
            while b"\r\n\r\n" not in received:
                chunk = connection.recv(65536)
                if not chunk:
                    return 0, {}, received
                received += chunk
            head, _, body = received.partition(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            headers = dict(line.split(": ", 1) for line in lines[1:])
            while len(body) < int(headers.get("Content-Length", 0)):
                chunk = connection.recv(65536)
                if not chunk:
                    break
                body += chunk
        except ConnectionResetError:
            return 0, {}, received
    return int(lines[0].split()[1]), headers, body


def _post(path: str, headers: str, body: bytes = b"") -> bytes:
    return f"POST {path} HTTP/1.1\r\nHost: x\r\n{headers}\r\n".encode() + body


@pytest.mark.parametrize(
    "headers, body, status",
    [
        ("Content-Length: abc\r\n", b"{}", 400),
        ("Content-Length: -1\r\n", b"{}", 400),
        ("Content-Length: 6000000000\r\n", b"{}", 413),
        ("Transfer-Encoding: chunked\r\n", b"zz\r\n{}\r\n0\r\n\r\n", 400),
        ("Transfer-Encoding: chunked\r\n", b"%x\r\n{}\r\n0\r\n\r\n" % 2**40, 413),
    ],
    ids=["length abc", "length -1", "length 6e9", "chunk size zz", "chunk size 2**40"],
)
def test_a_malformed_or_oversized_body_gets_a_json_4xx(local_hub: LocalHub, headers: str, body: bytes, status: int) -> None:
    """The connection was dropped (or, for -1 and 6e9, the handler waited for the body for ever): the clients
    retry a dropped connection with back-off for about 20 s, which looks like a hang."""
    answered, response_headers, answer = _raw(local_hub, _post("/api/validate-yaml", headers, body))
    assert answered == status and json.loads(answer)["error"], (answered, answer)
    assert response_headers.get("Connection") == "close"  # where the next request starts is unknown
    assert _request(local_hub, "GET", "/api/whoami-v2", headers=_OWNER)[0] == 200  # the server goes on


@pytest.mark.parametrize("length", ["-1", "6000000000"])
def test_an_anonymous_write_is_refused_before_its_body_is_read(local_hub: LocalHub, hub_repo_id: str,
                                                               length: str) -> None:
    """The body was read before the token was looked at: an anonymous client announcing -1 or 6e9 bytes held a
    handler thread waiting for them."""
    from huggingface_hub import HfApi

    HfApi().create_repo(hub_repo_id)
    for path in (f"/api/models/{hub_repo_id}/commit/main", "/api/repos/create", f"/{hub_repo_id}.git/info/lfs/objects/batch"):
        status, headers, answer = _raw(local_hub, _post(path, f"Content-Length: {length}\r\n"))
        assert status == 401 and "needs a token" in json.loads(answer)["error"], (path, status, answer)
        assert headers.get("Connection") == "close"
    # an upload link is checked the same way: its signature, before its bytes
    oid = hashlib.sha256(b"never sent").hexdigest()
    put = f"PUT /_lfs/models/{hub_repo_id}/{oid}?sig=forged HTTP/1.1\r\nHost: x\r\nContent-Length: {length}\r\n\r\n"
    status, _, answer = _raw(local_hub, put.encode())
    assert status == 401 and "not signed" in json.loads(answer)["error"]


def test_a_deeply_nested_json_body_is_a_400(local_hub: LocalHub) -> None:
    """json.loads raised RecursionError, which the server answered with a 500 (a server bug)."""
    status, _, answer = _request(local_hub, "POST", "/api/repos/create", b"[" * 100_000 + b"]" * 100_000, _OWNER)
    assert status == 400 and "not valid JSON" in json.loads(answer)["error"]


@pytest.mark.parametrize("path", ["main//notes.txt", "main/notes.txt/", "main/./notes.txt"])
def test_empty_path_parts_are_refused_by_resolve(local_hub: LocalHub, hub_repo_id: str, path: str) -> None:
    """``resolve/main//x`` was served as ``x``: the path was stripped of slashes before it was checked."""
    from huggingface_hub import HfApi

    HfApi().create_repo(hub_repo_id)
    HfApi().upload_file(path_or_fileobj=b"notes\n", path_in_repo="notes.txt", repo_id=hub_repo_id)
    for method in ("GET", "HEAD"):
        status, _, answer = _request(local_hub, method, f"/{hub_repo_id}/resolve/{path}", headers=_OWNER)
        assert status == 400, (method, status, answer)
    status, _, answer = _request(local_hub, "GET", f"/api/models/{hub_repo_id}/tree/main//x", headers=_OWNER)
    assert status == 400 and "Invalid path" in json.loads(answer)["error"]
    assert _request(local_hub, "GET", f"/{hub_repo_id}/resolve/main/notes.txt", headers=_OWNER)[2] == b"notes\n"
