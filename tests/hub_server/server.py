"""The HTTP side of the local Hub-compatible test server: routes, request parsing, responses.

The real, unpatched huggingface_hub, datasets and transformers clients talk to it over HTTP
on 127.0.0.1 (``tests/hub_server/README.md`` says why, and what the wire protocol is). Each
request goes to one ``_api_*`` method; the Hub's semantics (revisions, upload modes, commit
rules) live in :mod:`tests.hub_server.store`, who may do what in
:mod:`tests.hub_server.access`. Standard library only. Model and dataset repositories; no
Spaces, no Xet: clients must run with ``HF_HUB_DISABLE_XET=1``. Users and their tokens are
given when the server starts (:data:`DEFAULT_USERS` otherwise).

:func:`serve` runs the server in this process (``python -m tests.hub_server`` calls it); the
tests start it as a subprocess with :func:`tests.hub_server.process.start_local_hub`.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import sys
import threading
import time
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import IO, Any
from urllib.parse import parse_qs, unquote, urlsplit

from .access import INVALID_CREDENTIALS, Access
from .store import (
    DEFAULT_BRANCH,
    REGULAR_FILE_MAX_BYTES,
    DeleteFile,
    DeleteFolder,
    FileEntry,
    HubError,
    HubStore,
    Operation,
    PutFile,
    Repo,
    Snapshot,
    check_path,
    check_repo_id,
    folder_oid,
    is_binary,
    list_folder,
    upload_mode,
)

LOCAL_HUB_USER = "user"
"""The test suite's user: its clients send :data:`LOCAL_HUB_TOKEN` (``HF_TOKEN``)."""
LOCAL_HUB_TOKEN = "hf_local_test_hub_token"
"""The token of :data:`LOCAL_HUB_USER`."""
LOCAL_HUB_OTHER_USER = "other-user"
"""A second user, for tests of what one user may not do to another's repositories."""
LOCAL_HUB_OTHER_TOKEN = "hf_local_test_hub_other_token"
"""The token of :data:`LOCAL_HUB_OTHER_USER`."""
DEFAULT_USERS = {LOCAL_HUB_USER: LOCAL_HUB_TOKEN, LOCAL_HUB_OTHER_USER: LOCAL_HUB_OTHER_TOKEN}
"""User name → token, when the server is started without its own list."""

HOST = "127.0.0.1"
"""The only interface the server listens on: it is for tests on this machine."""
MAX_BODY_BYTES = 512 << 20
"""The largest request body read (413 beyond): bodies are read into memory, and tests push small files."""
_JSON = "application/json"

_Json = dict[str, Any] | list[Any]


@dataclass
class _Response:
    status: int
    body: bytes = b""
    content_type: str = _JSON
    headers: dict[str, str] = field(default_factory=dict)
    file: Path | None = None  # a blob streamed instead of ``body``
    file_range: tuple[int, int] = (0, 0)  # (offset, length) of ``file`` to send


def _json(data: _Json, status: int = 200, **headers: str) -> _Response:
    return _Response(status, json.dumps(data).encode(), _JSON, headers)


def _repo_url(base: str, repo: Repo) -> str:
    prefix = "" if repo.repo_type == "model" else f"{repo.repo_type}s/"
    return f"{base}/{prefix}{repo.repo_id}"


def _split_revision(raw: str) -> tuple[str, str]:
    """``(revision, path)`` from ``<rev>/<path>`` where the rev may be percent-encoded.

    Clients send ``refs%2Fpr%2F1``; a literal ``refs/pr/1`` is accepted too.
    """
    segments = raw.split("/")
    take = 3 if unquote(segments[0]) == "refs" and len(segments) >= 3 else 1
    revision = "/".join(unquote(s) for s in segments[:take])
    # not stripped: "main//x" must reach check_path as "/x" (an empty part), not be served as "x"
    return revision, "/".join(unquote(s) for s in segments[take:])


def _flag(values: list[str] | None) -> bool:
    return values is not None and values[-1].lower() in ("1", "true")


class _HubServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, port: int, store: HubStore, access: Access) -> None:
        super().__init__((HOST, port), _HubHandler)
        self.store = store
        self.access = access


class _HubHandler(BaseHTTPRequestHandler):
    """Routes each request to one ``_api_*`` method; every error becomes a JSON 4xx/5xx."""

    protocol_version = "HTTP/1.1"  # keep-alive: the httpx-based clients reuse connections
    timeout = 60  # seconds a client may stall mid-request before its thread gives up on it
    server: _HubServer
    _user: str | None  # who sent the request being handled (None: no token)

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_HEAD(self) -> None:
        self._dispatch("HEAD")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    @property
    def _base(self) -> str:
        return f"http://{self.headers.get('Host', f'{HOST}:{self.server.server_port}')}"

    @property
    def _store(self) -> HubStore:
        return self.server.store

    @property
    def _access(self) -> Access:
        return self.server.access

    def _declares_body(self) -> bool:
        return "chunked" in self.headers.get("Transfer-Encoding", "").lower() or (
            self.headers.get("Content-Length") or "0").strip() != "0"

    def _read_body(self) -> bytes:
        """The whole request body, at most :data:`MAX_BODY_BYTES`; 400 when its framing is malformed.

        Read only once the request may be handled (see :meth:`_dispatch`); a connection whose
        body is left unread, or unreadable, is closed after the answer.
        """
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks, total = [], 0
            while True:
                line = self.rfile.readline(1024).split(b";")[0].strip()
                if not re.fullmatch(rb"[0-9A-Fa-f]{1,16}", line):
                    raise HubError(400, f"Malformed chunked body: chunk size {line[:40]!r} is not a hex number")
                size = int(line, 16)
                total += size
                if total > MAX_BODY_BYTES:
                    raise HubError(413, f"Request body over {MAX_BODY_BYTES} bytes; the local test Hub reads no more")
                if size == 0:
                    break
                chunks.append(self.rfile.read(size))
                if len(chunks[-1]) < size or self.rfile.readline(1024) != b"\r\n":
                    raise HubError(400, "Malformed chunked body: a chunk is shorter than its size says")
            while self.rfile.readline(1024).strip():
                pass  # trailers
            return b"".join(chunks)
        text = (self.headers.get("Content-Length") or "0").strip()
        if not re.fullmatch(r"[0-9]{1,20}", text):
            raise HubError(400, f"Malformed Content-Length {text[:40]!r}: it must be a number of bytes")
        length = int(text)
        if length > MAX_BODY_BYTES:
            raise HubError(
                413, f"Request body of {length} bytes is over {MAX_BODY_BYTES}; the local test Hub reads no more")
        body = self.rfile.read(length) if length else b""
        if len(body) < length:
            raise HubError(400, f"Request body ended after {len(body)} of its {length} bytes")
        return body

    def _dispatch(self, method: str) -> None:
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        body_read = False
        try:
            # Who asks, and whether they may, is settled before the body is read: an anonymous
            # client announcing gigabytes must not hold a thread while it (never) sends them.
            self._user = self._access.authenticate(self.headers.get("Authorization"))
            handler, match = self._route(method, url.path)
            if handler in _WRITES:
                self._access.writer(self._user)
            elif handler is _HubHandler._api_lfs_upload:
                self._access.check_upload(*self._repo_key(match), match["oid"], (query.get("sig") or [None])[-1])
            body = self._read_body()
            body_read = True
            response = handler(self, match, query, body)
        except HubError as e:
            response = _json({"error": e.message}, e.status)
            if e.code:
                response.headers["X-Error-Code"] = e.code
            response.headers["X-Error-Message"] = e.message.encode("ascii", "replace").decode()
        except Exception:  # a server bug must still answer, or the client retries for ~20 s
            self.log_error("%s", traceback.format_exc())
            response = _json({"error": f"local test Hub failed on {method} {url.path}; see its log"}, 500)
        if not body_read and self._declares_body():
            response.headers["Connection"] = "close"  # the unread body is not the next request
        self._send(response, head_only=method == "HEAD")

    def _send(self, response: _Response, *, head_only: bool) -> None:
        start, length = response.file_range
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(length if response.file else len(response.body)))
        for name, value in response.headers.items():
            self.send_header(name, value)
        self.end_headers()
        if head_only:
            return
        if response.file is None:
            self.wfile.write(response.body)
            return
        with response.file.open("rb") as f:
            f.seek(start)
            while length > 0:
                chunk = f.read(min(length, 1 << 20))
                self.wfile.write(chunk)
                length -= len(chunk)

    @staticmethod
    def _route(method: str, path: str) -> tuple[_Handler, re.Match[str]]:
        for methods, pattern, handler in _ROUTES:
            match = pattern.fullmatch(path)
            if match and method in methods:
                return handler, match
        raise HubError(404, f"The local test Hub does not implement {method} {path}")

    @staticmethod
    def _repo_key(match: re.Match[str]) -> tuple[str, str]:
        """``(repo type, repo id)`` from a route match, percent-decoded once (the store validates the id)."""
        return (match["type"] or "models").removesuffix("s"), f"{unquote(match['ns'])}/{unquote(match['name'])}"

    def _readable_repo(self, match: re.Match[str]) -> Repo:
        """The repository, if it exists and the caller may see it (a private one: its owner only)."""
        return self._access.check_read(self._user, self._store.repo(*self._repo_key(match)))

    def _writable_repo(self, match: re.Match[str]) -> tuple[Repo, str]:
        """The repository and the writer, if the caller has a token (401), may see it (404) and owns it (403)."""
        user = self._access.writer(self._user)  # 401 before revealing anything about the repository
        repo = self._readable_repo(match)
        self._access.check_write(user, repo.namespace)
        return repo, user

    def _body_json(self, body: bytes) -> Any:
        try:
            return json.loads(body or b"{}")
        except ValueError as e:
            raise HubError(400, f"Request body is not valid JSON: {e}") from e
        except RecursionError:  # a client's error, not the server's
            raise HubError(400, "Request body is not valid JSON: nested too deeply") from None

    # --- repositories and users -------------------------------------------------------

    def _api_whoami(self, match: re.Match[str], query: dict[str, list[str]], body: bytes) -> _Response:
        user = self._user
        if user is None:
            raise HubError(401, INVALID_CREDENTIALS)
        token = {"displayName": f"{user}'s token", "role": "write"}
        info = {"type": "user", "id": user, "name": user, "fullname": user, "orgs": [], "isPro": False}
        return _json(info | {"auth": {"type": "access_token", "accessToken": token}})

    def _api_create_repo(self, match: re.Match[str], query: dict[str, list[str]], body: bytes) -> _Response:
        user = self._access.writer(self._user)
        payload = self._body_json(body)
        repo_type = payload.get("type") or "model"
        namespace, name = payload.get("organization") or user, payload.get("name")
        if not (isinstance(namespace, str) and isinstance(name, str) and isinstance(repo_type, str)):
            raise HubError(400, f"'name', 'organization' and 'type' must be strings, got {payload!r}")
        repo_id = check_repo_id(f"{namespace}/{name}")  # 400 for an invalid id comes before the 403
        self._access.check_write(user, namespace)
        private = bool(payload.get("private")) or payload.get("visibility") == "private"
        try:
            repo = self._store.create_repo(repo_type, repo_id, private=private, author=user)
        except HubError as e:
            if e.status != 409:
                raise
            # create_repo(exist_ok=True) reads the url from the 409 body.
            url = _repo_url(self._base, Repo(self._store, repo_type, repo_id))
            return _json({"error": e.message, "url": url}, 409)
        return _json({"url": _repo_url(self._base, repo), "name": repo_id, "id": repo_id})

    def _api_repo_info(self, match: re.Match[str], query: dict[str, list[str]], body: bytes) -> _Response:
        repo = self._readable_repo(match)
        snapshot = repo.snapshot(unquote(match["rev"] or DEFAULT_BRANCH))
        meta = repo.meta
        siblings = []
        for path, entry in sorted(snapshot.files.items()):
            sibling: dict[str, Any] = {"rfilename": path, "size": entry.size, "blobId": entry.oid}
            if entry.lfs:
                sibling["lfs"] = {"size": entry.size, "sha256": entry.sha256, "pointerSize": entry.pointer_size}
            siblings.append(sibling)
        info = {
            "_id": repo.repo_id,
            "id": repo.repo_id,
            "author": repo.repo_id.split("/")[0],
            "sha": snapshot.id,
            "private": meta["private"],
            "gated": False,
            "disabled": False,
            "downloads": 0,
            "likes": 0,
            "tags": [],
            "createdAt": meta["createdAt"],
            "lastModified": snapshot.date,
            "siblings": siblings,
        }
        return _json(info)

    def _api_validate_yaml(self, match: re.Match[str], query: dict[str, list[str]], body: bytes) -> _Response:
        self._body_json(body)
        return _json({"errors": [], "warnings": []})

    # --- listing -------------------------------------------------------------------

    def _entry_json(self, repo: Repo, snapshot: Snapshot, path: str, entry: FileEntry | None, expand: bool) -> _Json:
        if entry is None:
            item: dict[str, Any] = {"type": "directory", "oid": folder_oid(snapshot, path), "size": 0, "path": path}
        else:
            item = {"type": "file", "oid": entry.oid, "size": entry.size, "path": path}
            if entry.lfs:
                item["lfs"] = {"oid": entry.sha256, "size": entry.size, "pointerSize": entry.pointer_size}
        if expand:
            last = repo.last_commit_touching(snapshot.id, path)
            item["lastCommit"] = {"id": last.id, "title": last.title, "date": last.date}
        return item

    def _api_tree(self, match: re.Match[str], query: dict[str, list[str]], body: bytes) -> _Response:
        repo = self._readable_repo(match)
        revision, folder = _split_revision(match["rest"])
        folder = folder.removesuffix("/")  # "tree/main/" lists the root, as on the Hub
        if folder:
            check_path(folder)
        snapshot = repo.snapshot(revision)
        expand = _flag(query.get("expand"))
        items = list_folder(snapshot, folder, recursive=_flag(query.get("recursive")))
        return _json([self._entry_json(repo, snapshot, path, entry, expand) for path, entry in items])

    def _api_paths_info(self, match: re.Match[str], query: dict[str, list[str]], body: bytes) -> _Response:
        repo = self._readable_repo(match)
        snapshot = repo.snapshot(unquote(match["rev"]))
        form = parse_qs(body.decode(errors="replace"))
        expand = _flag(form.get("expand"))
        items = []
        for path in dict.fromkeys(p.strip("/") for p in form.get("paths", [])):
            if path:
                check_path(path)
            if path in snapshot.files:
                items.append(self._entry_json(repo, snapshot, path, snapshot.files[path], expand))
            elif path and snapshot.folder_exists(path):
                items.append(self._entry_json(repo, snapshot, path, None, expand))
        return _json(items)

    def _api_refs(self, match: re.Match[str], query: dict[str, list[str]], body: bytes) -> _Response:
        refs = self._readable_repo(match).refs()
        result: dict[str, Any] = {
            "branches": [
                {"name": name, "ref": f"refs/heads/{name}", "targetCommit": oid}
                for name, oid in sorted(refs["branches"].items())
            ],
            "tags": [
                {"name": name, "ref": f"refs/tags/{name}", "targetCommit": oid}
                for name, oid in sorted(refs["tags"].items())
            ],
            "converts": [],
        }
        if _flag(query.get("include_prs")):
            result["pullRequests"] = [
                {"name": f"refs/pr/{num}", "ref": f"refs/pr/{num}", "targetCommit": oid}
                for num, oid in sorted(refs["pulls"].items(), key=lambda item: int(item[0]))
            ]
        return _json(result)

    def _api_commits(self, match: re.Match[str], query: dict[str, list[str]], body: bytes) -> _Response:
        history = self._readable_repo(match).history(unquote(match["rev"]))
        return _json(
            [
                {"id": c.id, "title": c.title, "message": c.message, "date": c.date, "authors": [{"user": c.author}]}
                for c in history
            ]
        )

    def _api_create_branch(self, match: re.Match[str], query: dict[str, list[str]], body: bytes) -> _Response:
        repo, _ = self._writable_repo(match)
        repo.create_branch(unquote(match["rev"]), self._body_json(body).get("startingPoint"))
        return _json({})

    def _api_delete_branch(self, match: re.Match[str], query: dict[str, list[str]], body: bytes) -> _Response:
        repo, _ = self._writable_repo(match)
        repo.delete_branch(unquote(match["rev"]))
        return _json({})

    # --- uploads -------------------------------------------------------------------

    def _api_preupload(self, match: re.Match[str], query: dict[str, list[str]], body: bytes) -> _Response:
        repo, _ = self._writable_repo(match)
        snapshot = repo.snapshot(unquote(match["rev"]))
        attributes = snapshot.files.get(".gitattributes")
        gitattributes = self._store.blob_path(attributes.sha256).read_text() if attributes else ""
        answers = []
        for item in self._body_json(body).get("files", []):
            try:
                sample = base64.b64decode(item["sample"], validate=True)
                path, size = check_path(item["path"]), int(item["size"])
            except (KeyError, TypeError, ValueError, binascii.Error) as e:
                raise HubError(400, f"Malformed preupload entry {item!r}: {e}") from e
            answer: dict[str, Any] = {
                "path": path,
                "uploadMode": upload_mode(path, size=size, sample=sample, gitattributes=gitattributes),
                "shouldIgnore": False,
            }
            if (existing := snapshot.files.get(path)) is not None:
                # Clients skip unchanged files by comparing this with sha256 (LFS) or git sha1.
                answer["oid"] = existing.sha256 if existing.lfs else existing.oid
            answers.append(answer)
        return _json({"files": answers})

    def _api_lfs_batch(self, match: re.Match[str], query: dict[str, list[str]], body: bytes) -> _Response:
        repo, _ = self._writable_repo(match)
        payload = self._body_json(body)
        if payload.get("operation") != "upload":
            raise HubError(400, f"Only the git-lfs 'upload' operation is supported, got {payload.get('operation')!r}")
        objects = []
        for obj in payload.get("objects", []):
            oid, size = obj.get("oid"), obj.get("size")
            if not isinstance(size, int):
                raise HubError(400, f"LFS object {oid!r} has no integer size")
            answer: dict[str, Any] = {"oid": oid, "size": size}
            if not self._store.has_blob(oid):
                href = f"{self._base}/_lfs/{repo.repo_type}s/{repo.repo_id}/{oid}"
                upload = f"{href}?sig={self._access.sign_upload(repo.repo_type, repo.repo_id, oid)}"
                answer["actions"] = {"upload": {"href": upload}, "verify": {"href": f"{href}/verify"}}
            objects.append(answer)
        result = {"transfer": "basic", "objects": objects, "hash_algo": "sha256"}
        return _Response(200, json.dumps(result).encode(), "application/vnd.git-lfs+json")

    def _api_lfs_upload(self, match: re.Match[str], query: dict[str, list[str]], body: bytes) -> _Response:
        # No token comes here (on the Hub this is a presigned storage URL): the signature is the
        # credential, checked by _dispatch before the body is read.
        repo_type, repo_id = self._repo_key(match)
        self._store.repo(repo_type, repo_id)
        self._store.put_blob(body, expected_sha256=match["oid"])
        return _Response(200)

    def _api_lfs_verify(self, match: re.Match[str], query: dict[str, list[str]], body: bytes) -> _Response:
        self._writable_repo(match)
        payload = self._body_json(body)
        path = self._store.blob_path(match["oid"])
        if not path.exists():
            raise HubError(404, f"LFS object {match['oid']} was not uploaded")
        if payload.get("size") != path.stat().st_size:
            raise HubError(400, f"LFS object {match['oid']} has size {path.stat().st_size}, not {payload.get('size')}")
        return _json({})

    def _commit_operation(self, key: str, value: dict[str, Any]) -> Operation:
        path = value["path"]
        if key == "file":
            encoded = value["content"]
            # validate: without it, characters outside base64 are skipped ("!!" would commit an empty file)
            base64_encoded = value.get("encoding") == "base64"
            content = base64.b64decode(encoded, validate=True) if base64_encoded else encoded.encode()
            # The Hub rejects big or binary files outside git-lfs; catching it here keeps
            # clients that skip the preupload classification honest.
            if content and (len(content) > REGULAR_FILE_MAX_BYTES or is_binary(content[:8000])):
                raise HubError(400, f"Your push was rejected: {path!r} is binary or large and must go through LFS")
            self._store.put_blob(content)
            return PutFile(path, FileEntry.regular(content))
        if key == "lfsFile":
            sha256 = value["oid"]
            if not self._store.has_blob(sha256):
                raise HubError(400, f"LFS object {sha256} for {path!r} was never uploaded")
            stored = self._store.blob_path(sha256).stat().st_size
            if value.get("size", stored) != stored:
                raise HubError(400, f"LFS object {sha256} for {path!r} has {stored} bytes, not {value['size']!r}")
            return PutFile(path, FileEntry.large(sha256, stored))
        if key == "deletedFile":
            return DeleteFile(path)
        if key == "deletedFolder":
            return DeleteFolder(path)
        raise HubError(400, f"Unknown commit operation {key!r}")

    def _api_commit(self, match: re.Match[str], query: dict[str, list[str]], body: bytes) -> _Response:
        repo, user = self._writable_repo(match)
        try:
            lines = [json.loads(line) for line in body.splitlines() if line.strip()]
            header = lines[0]["value"] if lines and lines[0]["key"] == "header" else None
            if header is None:
                raise HubError(400, "A commit payload must start with a 'header' line")
            operations = [self._commit_operation(line["key"], line["value"]) for line in lines[1:]]
        except (ValueError, KeyError, TypeError, AttributeError, binascii.Error) as e:
            raise HubError(400, f"Malformed commit payload: {e!r}") from e
        except RecursionError:
            raise HubError(400, "Malformed commit payload: a line is nested too deeply") from None
        result = repo.commit(
            unquote(match["rev"]),
            operations,
            title=header.get("summary") or "Update",
            author=user,
            message=header.get("description") or "",
            parent_commit=header.get("parentCommit"),
            create_pr=_flag(query.get("create_pr")),
        )
        url = _repo_url(self._base, repo)
        answer = {"success": True, "commitOid": result.oid, "commitUrl": f"{url}/commit/{result.oid}"}
        if result.pr_num is not None:
            answer["pullRequestUrl"] = f"{url}/discussions/{result.pr_num}"
        return _json(answer)

    # --- downloads -----------------------------------------------------------------

    def _api_resolve(self, match: re.Match[str], query: dict[str, list[str]], body: bytes) -> _Response:
        repo = self._readable_repo(match)
        revision, path = _split_revision(match["rest"])
        check_path(path)
        snapshot = repo.snapshot(revision)
        entry = snapshot.files.get(path)
        headers = {"X-Repo-Commit": snapshot.id}
        if entry is None:
            response = _json({"error": f"Entry not found: {path!r} at {revision}"}, 404, **headers)
            response.headers["X-Error-Code"] = "EntryNotFound"
            return response
        headers |= {"ETag": f'"{entry.oid}"', "Accept-Ranges": "bytes"}
        if entry.lfs:
            headers |= {"X-Linked-Etag": f'"{entry.sha256}"', "X-Linked-Size": str(entry.size)}
        blob = self._store.blob_path(entry.sha256)
        byte_range = _parse_range(self.headers.get("Range"), entry.size)
        if byte_range is None:
            return _Response(
                200, content_type="application/octet-stream", headers=headers, file=blob, file_range=(0, entry.size)
            )
        start, end = byte_range
        if start >= entry.size or start > end:
            response = _json({"error": f"Range {self.headers['Range']} outside {entry.size} bytes"}, 416, **headers)
            response.headers["Content-Range"] = f"bytes */{entry.size}"
            return response
        headers["Content-Range"] = f"bytes {start}-{end}/{entry.size}"
        return _Response(
            206,
            content_type="application/octet-stream",
            headers=headers,
            file=blob,
            file_range=(start, end - start + 1),
        )

    def log_message(self, format: str, *args: Any) -> None:
        sys.stderr.write(f"[{time.strftime('%H:%M:%S')}] {format % args}\n")


def _parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """``(first, last)`` byte of a single ``bytes=`` range clipped to ``size``; ``None`` means whole file.

    >>> _parse_range("bytes=2-", 10), _parse_range("bytes=-3", 10), _parse_range("bytes=0-99", 10)
    ((2, 9), (7, 9), (0, 9))
    """
    if not header or not header.startswith("bytes=") or "," in header:
        return None
    first, _, last = header.removeprefix("bytes=").strip().partition("-")
    try:
        if not first:
            return max(size - int(last), 0), size - 1
        return int(first), min(int(last), size - 1) if last else size - 1
    except ValueError:
        return None


_REPO = r"(?P<type>models|datasets)/(?P<ns>[^/]+)/(?P<name>[^/]+)"
_GIT_REPO = r"(?:(?P<type>datasets)/)?(?P<ns>[^/]+)/(?P<name>[^/]+?)"
_Handler = Callable[[_HubHandler, re.Match[str], dict[str, list[str]], bytes], _Response]
_ROUTES: list[tuple[tuple[str, ...], re.Pattern[str], _Handler]] = [
    (("GET",), re.compile(r"/api/whoami-v2"), _HubHandler._api_whoami),
    (("POST",), re.compile(r"/api/repos/create"), _HubHandler._api_create_repo),
    (("POST",), re.compile(r"/api/validate-yaml"), _HubHandler._api_validate_yaml),
    (("GET",), re.compile(rf"/api/{_REPO}(?:/revision/(?P<rev>.+))?"), _HubHandler._api_repo_info),
    (("GET",), re.compile(rf"/api/{_REPO}/tree/(?P<rest>.+)"), _HubHandler._api_tree),
    (("POST",), re.compile(rf"/api/{_REPO}/paths-info/(?P<rev>.+)"), _HubHandler._api_paths_info),
    (("POST",), re.compile(rf"/api/{_REPO}/preupload/(?P<rev>.+)"), _HubHandler._api_preupload),
    (("POST",), re.compile(rf"/api/{_REPO}/commit/(?P<rev>.+)"), _HubHandler._api_commit),
    (("GET",), re.compile(rf"/api/{_REPO}/refs"), _HubHandler._api_refs),
    (("GET",), re.compile(rf"/api/{_REPO}/commits/(?P<rev>.+)"), _HubHandler._api_commits),
    (("POST",), re.compile(rf"/api/{_REPO}/branch/(?P<rev>.+)"), _HubHandler._api_create_branch),
    (("DELETE",), re.compile(rf"/api/{_REPO}/branch/(?P<rev>.+)"), _HubHandler._api_delete_branch),
    (("POST",), re.compile(rf"/{_GIT_REPO}\.git/info/lfs/objects/batch"), _HubHandler._api_lfs_batch),
    (("PUT",), re.compile(rf"/_lfs/{_REPO}/(?P<oid>[0-9a-f]{{64}})"), _HubHandler._api_lfs_upload),
    (("POST",), re.compile(rf"/_lfs/{_REPO}/(?P<oid>[0-9a-f]{{64}})/verify"), _HubHandler._api_lfs_verify),
    (("GET", "HEAD"), re.compile(rf"/{_GIT_REPO}/resolve/(?P<rest>.+)"), _HubHandler._api_resolve),
]
# Requests refused (401) without a token before their body is read; upload links are checked
# for their signature at the same point.
_WRITES = {
    _HubHandler._api_create_repo, _HubHandler._api_preupload, _HubHandler._api_commit, _HubHandler._api_create_branch,
    _HubHandler._api_delete_branch, _HubHandler._api_lfs_batch, _HubHandler._api_lfs_verify,
}


def serve(
    root: Path,
    port: int = 0,
    *,
    users: Mapping[str, str] = DEFAULT_USERS,
    exit_on_stdin_eof: bool = False,
    out: IO[str] | None = None,
) -> None:
    """Serve repositories stored under ``root`` on 127.0.0.1 until interrupted.

    ``users`` maps each user name to its token. Writes ``PORT <n>`` to ``out`` once the
    socket listens. With ``exit_on_stdin_eof`` the server stops when its stdin closes, so a
    parent that dies never leaves it running.
    """
    server = _HubServer(port, HubStore(root), Access(users))
    if exit_on_stdin_eof:

        def watch_stdin() -> None:
            sys.stdin.buffer.read()
            server.shutdown()

        threading.Thread(target=watch_stdin, daemon=True).start()
    print(f"PORT {server.server_port}", file=out or sys.stdout, flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()
