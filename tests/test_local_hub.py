"""The local test Hub against the real, unpatched huggingface_hub, datasets and transformers.

Each test pushes through the public client API and reads back through it (or through raw
HTTP where the protocol itself is the point), comparing with what was pushed.
"""

from __future__ import annotations

import doctest
import hashlib
import http.client
import importlib
import io
import json
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image as PILImage

from tests.hub_server import LOCAL_HUB_TOKEN, LOCAL_HUB_USER, LocalHub

pytestmark = pytest.mark.hub


def _png(seed: int) -> tuple[bytes, np.ndarray]:
    pixels = np.random.default_rng(seed).integers(0, 256, size=(6, 7, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    PILImage.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue(), pixels


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --- datasets ---------------------------------------------------------------------


def test_dataset_two_configs_push_and_load(hub_repo_id: str) -> None:
    from datasets import Dataset, Features, Image, Value, load_dataset
    from huggingface_hub import DatasetCard, HfApi

    pngs = [_png(seed) for seed in range(4)]
    features = Features({"image": Image(), "ref_id": Value("int64"), "sentence": Value("string")})
    rows = {
        "image": [{"bytes": data, "path": f"{i}.png"} for i, (data, _) in enumerate(pngs)],
        "ref_id": [10, 11, 12, 13],
        "sentence": ["left dog", "the red car", "man in blue", "bowl"],
    }
    dataset = Dataset.from_dict(rows, features=features)
    dataset.push_to_hub(hub_repo_id, config_name="a")
    dataset.select([3, 1]).push_to_hub(hub_repo_id, config_name="b")

    # The second push merged its config into the README written by the first.
    card = DatasetCard.load(hub_repo_id)
    configs = {config["config_name"]: config for config in card.data.configs}
    assert sorted(configs) == ["a", "b"]
    assert configs["a"]["data_files"][0]["path"] == "a/train-*"

    loaded = load_dataset(hub_repo_id, "a", split="train")
    assert loaded["ref_id"] == rows["ref_id"]
    assert loaded["sentence"] == rows["sentence"]
    for row, (_, pixels) in zip(loaded, pngs, strict=True):
        np.testing.assert_array_equal(np.asarray(row["image"]), pixels)
    raw = loaded.cast_column("image", Image(decode=False))
    assert [row["image"]["bytes"] for row in raw] == [data for data, _ in pngs]
    assert load_dataset(hub_repo_id, "b", split="train")["ref_id"] == [13, 11]

    with pytest.raises(ValueError, match=r"Config name is missing[\s\S]*\['a', 'b'\]"):
        load_dataset(hub_repo_id)

    tree = HfApi().list_repo_tree(hub_repo_id, repo_type="dataset", recursive=True)
    files = {entry.path: entry for entry in tree if hasattr(entry, "size")}
    shards = [path for path in files if path.endswith(".parquet")]
    assert sorted(p.split("/")[0] for p in shards) == ["a", "b"]
    assert all(files[path].lfs is not None for path in shards)
    assert files["README.md"].lfs is None


# --- transformers -----------------------------------------------------------------


def test_tiny_bert_push_and_from_pretrained_goes_through_lfs(hub_repo_id: str, tmp_path: Path) -> None:
    import torch
    from huggingface_hub import HfApi, get_hf_file_metadata, hf_hub_url
    from transformers import BertConfig, BertModel

    torch.set_num_threads(1)
    torch.manual_seed(0)
    config = BertConfig(vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=37)
    model = BertModel(config)
    model.push_to_hub(hub_repo_id)

    reloaded = BertModel.from_pretrained(hub_repo_id, dtype=torch.float32)
    expected, actual = model.state_dict(), reloaded.state_dict()
    assert expected.keys() == actual.keys()
    for name, tensor in expected.items():
        torch.testing.assert_close(actual[name], tensor, rtol=0, atol=0, msg=name)

    model.save_pretrained(tmp_path)
    local_sha256 = _sha256(tmp_path / "model.safetensors")
    files = {f.path: f for f in HfApi().list_repo_tree(hub_repo_id)}
    assert files["model.safetensors"].lfs is not None
    assert files["model.safetensors"].lfs.sha256 == local_sha256
    assert files["config.json"].lfs is None
    metadata = get_hf_file_metadata(hf_hub_url(hub_repo_id, "model.safetensors"))
    assert metadata.etag == local_sha256  # X-Linked-Etag of an LFS file
    assert metadata.size == (tmp_path / "model.safetensors").stat().st_size


# --- huggingface_hub --------------------------------------------------------------


def test_create_repo_upload_folder_branches_and_listing(hub_repo_id: str, tmp_path: Path) -> None:
    from huggingface_hub import HfApi, get_hf_file_metadata, hf_hub_download, hf_hub_url
    from huggingface_hub.errors import HfHubHTTPError

    api = HfApi()
    url = api.create_repo(hub_repo_id)
    assert api.create_repo(hub_repo_id, exist_ok=True) == url
    with pytest.raises(HfHubHTTPError) as exists:
        api.create_repo(hub_repo_id)
    assert exists.value.response.status_code == 409

    folder = tmp_path / "upload"
    (folder / "nested" / "deeper").mkdir(parents=True)
    (folder / "notes.txt").write_text("main version\n")
    (folder / "nested" / "deeper" / "weights.npy").write_bytes(b"\x93NUMPY\x00" + bytes(range(256)))
    api.upload_folder(repo_id=hub_repo_id, folder_path=folder)
    assert sorted(api.list_repo_files(hub_repo_id)) == [".gitattributes", "nested/deeper/weights.npy", "notes.txt"]
    top = {entry.path: type(entry).__name__ for entry in api.list_repo_tree(hub_repo_id)}
    assert top == {".gitattributes": "RepoFile", "nested": "RepoFolder", "notes.txt": "RepoFile"}

    api.create_branch(hub_repo_id, branch="dev")
    with pytest.raises(HfHubHTTPError) as conflict:
        api.create_branch(hub_repo_id, branch="dev")
    assert conflict.value.response.status_code == 409
    api.create_branch(hub_repo_id, branch="dev", exist_ok=True)
    api.upload_file(path_or_fileobj=b"dev version\n", path_in_repo="notes.txt", repo_id=hub_repo_id, revision="dev")

    assert Path(hf_hub_download(hub_repo_id, "notes.txt", revision="dev")).read_text() == "dev version\n"
    assert Path(hf_hub_download(hub_repo_id, "notes.txt")).read_text() == "main version\n"
    weights = hf_hub_download(hub_repo_id, "nested/deeper/weights.npy", revision="dev")
    assert Path(weights).read_bytes() == (folder / "nested" / "deeper" / "weights.npy").read_bytes()

    notes = get_hf_file_metadata(hf_hub_url(hub_repo_id, "notes.txt", revision="dev"))
    assert notes.etag == hashlib.sha1(b"blob 12\0dev version\n").hexdigest()  # git blob id
    expanded = {f.path: f for f in api.list_repo_tree(hub_repo_id, recursive=True, expand=True, revision="dev")}
    assert expanded["notes.txt"].last_commit.title == "Upload notes.txt with huggingface_hub"
    assert expanded["nested/deeper/weights.npy"].last_commit.title == "Upload folder using huggingface_hub"
    assert expanded["nested/deeper/weights.npy"].lfs is not None  # binary content
    infos = api.get_paths_info(hub_repo_id, ["notes.txt", "nested", "absent.txt"], revision="dev")
    assert [(type(info).__name__, info.path) for info in infos] == [("RepoFile", "notes.txt"), ("RepoFolder", "nested")]

    refs = api.list_repo_refs(hub_repo_id)
    branches = {ref.name: ref.target_commit for ref in refs.branches}
    assert sorted(branches) == ["dev", "main"]
    assert branches["dev"] == api.repo_info(hub_repo_id, revision="dev").sha != branches["main"]
    titles = [commit.title for commit in api.list_repo_commits(hub_repo_id, revision="dev")]
    assert titles == ["Upload notes.txt with huggingface_hub", "Upload folder using huggingface_hub", "initial commit"]


def test_missing_repo_revision_and_file_raise_the_hub_errors(hub_repo_id: str) -> None:
    from huggingface_hub import HfApi, hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError

    api = HfApi()
    with pytest.raises(RepositoryNotFoundError):
        api.repo_info(hub_repo_id)
    api.create_repo(hub_repo_id, repo_type="dataset")
    with pytest.raises(RevisionNotFoundError):
        api.repo_info(hub_repo_id, repo_type="dataset", revision="no-such-branch")
    with pytest.raises(EntryNotFoundError):
        hf_hub_download(hub_repo_id, "missing.json", repo_type="dataset")
    with pytest.raises(EntryNotFoundError):
        list(api.list_repo_tree(hub_repo_id, path_in_repo="missing_folder", repo_type="dataset"))


def test_create_pr_commit_lands_on_pr_ref_not_main(hub_repo_id: str) -> None:
    from huggingface_hub import HfApi, hf_hub_download

    api = HfApi()
    api.create_repo(hub_repo_id)
    main_before = api.repo_info(hub_repo_id).sha
    first = api.upload_file(path_or_fileobj=b"proposal", path_in_repo="p.txt", repo_id=hub_repo_id, create_pr=True)
    second = api.upload_file(path_or_fileobj=b"other", path_in_repo="q.txt", repo_id=hub_repo_id, create_pr=True)

    assert (first.pr_revision, second.pr_revision) == ("refs/pr/1", "refs/pr/2")
    assert api.repo_info(hub_repo_id).sha == main_before
    assert not api.file_exists(hub_repo_id, "p.txt")
    assert Path(hf_hub_download(hub_repo_id, "p.txt", revision="refs/pr/1")).read_bytes() == b"proposal"
    assert api.list_repo_files(hub_repo_id, revision="refs/pr/2") == [".gitattributes", "q.txt"]
    prs = api.list_repo_refs(hub_repo_id, include_pull_requests=True).pull_requests
    assert [(ref.ref, ref.target_commit) for ref in prs] == [("refs/pr/1", first.oid), ("refs/pr/2", second.oid)]


def test_stale_parent_commit_is_refused_and_deletes_apply(hub_repo_id: str) -> None:
    from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi
    from huggingface_hub.errors import HfHubHTTPError

    api = HfApi()
    api.create_repo(hub_repo_id)
    base = api.repo_info(hub_repo_id).sha
    api.create_commit(
        hub_repo_id,
        [CommitOperationAdd(f"d/{name}", name.encode()) for name in ("x", "y")] + [CommitOperationAdd("k", b"k")],
        commit_message="add",
        parent_commit=base,
    )
    with pytest.raises(HfHubHTTPError) as stale:
        api.create_commit(hub_repo_id, [CommitOperationAdd("z", b"z")], commit_message="late", parent_commit=base)
    assert stale.value.response.status_code == 412
    api.create_commit(hub_repo_id, [CommitOperationDelete("d/"), CommitOperationDelete("k")], commit_message="rm")
    assert api.list_repo_files(hub_repo_id) == [".gitattributes"]


# --- the protocol itself ------------------------------------------------------------


def _connection(hub: LocalHub) -> http.client.HTTPConnection:
    return http.client.HTTPConnection(urlsplit(hub.url).hostname, urlsplit(hub.url).port, timeout=10)


def test_errors_are_json_with_code_and_keep_the_connection(local_hub: LocalHub) -> None:
    connection = _connection(local_hub)
    for _ in range(2):  # the second round reuses the kept-alive connection
        connection.request("GET", f"/api/models/{LOCAL_HUB_USER}/does-not-exist")
        response = connection.getresponse()
        assert response.status == 404
        assert response.getheader("X-Error-Code") == "RepoNotFound"
        assert "not found" in json.loads(response.read())["error"].lower()
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {LOCAL_HUB_TOKEN}"}
    connection.request("POST", "/api/repos/create", body=b"{not json", headers=headers)
    response = connection.getresponse()
    assert response.status == 400
    assert "JSON" in json.loads(response.read())["error"]
    connection.close()


def test_lfs_batch_accepts_a_chunked_upload_and_then_skips_the_stored_object(
    local_hub: LocalHub, hub_repo_id: str
) -> None:
    from huggingface_hub import HfApi

    HfApi().create_repo(hub_repo_id)
    content = b"\x00chunked lfs object" * 100
    obj = {"oid": hashlib.sha256(content).hexdigest(), "size": len(content)}
    batch = json.dumps({"operation": "upload", "transfers": ["basic"], "objects": [obj]})
    auth = {"Authorization": f"Bearer {LOCAL_HUB_TOKEN}", "Content-Type": "application/json"}
    connection = _connection(local_hub)

    def post_batch() -> dict:
        connection.request("POST", f"/{hub_repo_id}.git/info/lfs/objects/batch", body=batch, headers=auth)
        response = connection.getresponse()
        assert response.status == 200
        return json.loads(response.read())["objects"][0]

    actions = post_batch()["actions"]
    chunks = (content[i : i + 300] for i in range(0, len(content), 300))
    upload = urlsplit(actions["upload"]["href"])  # a signed link: the query is the credential
    connection.request("PUT", f"{upload.path}?{upload.query}", body=chunks, encode_chunked=True)
    assert connection.getresponse().read() == b""
    connection.request("POST", urlsplit(actions["verify"]["href"]).path, body=json.dumps(obj), headers=auth)
    verified = connection.getresponse()
    assert (verified.status, verified.read()) == (200, b"{}")
    assert post_batch() == obj  # no actions: the object is already stored
    connection.close()


@pytest.fixture(scope="module")
def ranged_file(local_hub: LocalHub) -> tuple[str, bytes]:
    """A binary file (stored as LFS) of 1000 known bytes in a fresh repo."""
    from huggingface_hub import HfApi

    content = np.random.default_rng(7).integers(0, 256, 1000, dtype=np.uint8).tobytes()
    repo_id = f"{LOCAL_HUB_USER}/ranged-file"
    HfApi().create_repo(repo_id, exist_ok=True)
    HfApi().upload_file(path_or_fileobj=content, path_in_repo="blob.bin", repo_id=repo_id)
    return f"/{repo_id}/resolve/main/blob.bin", content


@settings(max_examples=40, deadline=None)
@given(first=st.integers(0, 1100), length=st.integers(1, 1100), suffix=st.booleans())
def test_range_requests_return_the_same_bytes_as_slicing(
    local_hub: LocalHub, ranged_file: tuple[str, bytes], first: int, length: int, suffix: bool
) -> None:
    path, content = ranged_file
    header = f"bytes=-{length}" if suffix else f"bytes={first}-{first + length - 1}"
    expected = content[-length:] if suffix else content[first : first + length]
    connection = _connection(local_hub)
    connection.request("GET", path, headers={"Range": header})
    response = connection.getresponse()
    body = response.read()
    connection.close()
    if not expected:
        assert response.status == 416
        assert response.getheader("Content-Range") == f"bytes */{len(content)}"
        return
    assert response.status == 206
    assert body == expected
    start = len(content) - len(expected) if suffix else first
    assert response.getheader("Content-Range") == f"bytes {start}-{start + len(expected) - 1}/{len(content)}"
    assert response.getheader("X-Linked-Etag") == f'"{hashlib.sha256(content).hexdigest()}"'


@pytest.mark.parametrize(
    "name",
    [
        "tests.hub_server.__main__",
        "tests.hub_server.access",
        "tests.hub_server.process",
        "tests.hub_server.server",
        "tests.hub_server.store",
    ],
)
def test_server_docstring_examples(name: str) -> None:
    # The server is not in the package, so tests/test_doctests.py does not reach its examples.
    flags = doctest.NORMALIZE_WHITESPACE | doctest.ELLIPSIS
    result = doctest.testmod(importlib.import_module(name), optionflags=flags)
    assert result.attempted > 0 and result.failed == 0
