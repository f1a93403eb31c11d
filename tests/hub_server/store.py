"""Storage behind the local test Hub: repositories, commits, branches and blobs on disk.

Every file content is stored once, under its sha256, in ``<root>/blobs``. A repository lives
in ``<root>/repos/<type>s/<namespace>/<name>/``: ``repo.json`` holds its visibility and refs
(branches, tags, pull-request refs), and ``commits/<40 hex>.json`` one immutable snapshot
each (parents, message, and every file's sha256, size, git oid and whether it is a
large-file (LFS) entry). Only :mod:`tests.hub_server.server` uses this module; the HTTP
details stay there, the Hub's semantics (revisions, upload modes, commit rules) live here.

Nothing from a request reaches the filesystem unchecked: repository ids are validated as the
Hub validates them (:func:`check_repo_id`), blobs are named by their sha256 only, paths inside
a repository never become file names, and every path built from a request is resolved and
checked to lie inside the store's root (:meth:`HubStore.inside`) before it is read or written.

    >>> import tempfile
    >>> store = HubStore(Path(tempfile.mkdtemp()))
    >>> repo = store.create_repo("model", "user/tiny", private=False, author="user")
    >>> sorted(repo.snapshot("main").files)
    ['.gitattributes']
    >>> upload_mode("model.safetensors", size=10, sample=b"{}", gitattributes=DEFAULT_GITATTRIBUTES)
    'lfs'
"""

from __future__ import annotations

import fnmatch
import hashlib
import itertools
import json
import os
import re
import tempfile
import threading
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

REPO_TYPES = ("model", "dataset")
DEFAULT_BRANCH = "main"
# The Hub refuses regular (non-LFS) files above this size.
REGULAR_FILE_MAX_BYTES = 10 * 1024 * 1024

_LFS_ATTRS = "filter=lfs diff=lfs merge=lfs -text"
_LFS_PATTERNS = (
    *("*.7z", "*.arrow", "*.bin", "*.bz2", "*.ckpt", "*.ftz", "*.gz", "*.h5", "*.joblib", "*.lfs.*", "*.lz4"),
    *("*.mds", "*.mlmodel", "*.model", "*.msgpack", "*.npy", "*.npz", "*.onnx", "*.ot", "*.parquet", "*.pb"),
    *("*.pickle", "*.pkl", "*.pt", "*.pth", "*.rar", "*.safetensors", "saved_model/**/*", "*.tar.*", "*.tar"),
    *("*.tflite", "*.tgz", "*.wasm", "*.xz", "*.zip", "*.zst", "*tfevents*"),
    # media, as in the Hub's default for dataset repositories
    *("*.pcm", "*.sam", "*.raw", "*.aac", "*.flac", "*.mp3", "*.ogg", "*.wav", "*.bmp", "*.gif", "*.png"),
    *("*.tiff", "*.jpg", "*.jpeg", "*.webp", "*.mp4", "*.webm"),
)
DEFAULT_GITATTRIBUTES = "".join(f"{pattern} {_LFS_ATTRS}\n" for pattern in _LFS_PATTERNS)
# Large-file mode even if a user's .gitattributes forgets them: the clients rely on it.
_ALWAYS_LFS = ("*.parquet", "*.safetensors", "*.bin")

# The Hub's rule for each half of a repo id: ASCII letters, digits, "-", "_", "."; 1 to 96
# characters; neither starting nor ending with "-" or "."; no "--" or ".." (checked apart).
_REPO_NAME = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9_])?", re.ASCII)
_BRANCH_NAME = re.compile(r"[A-Za-z0-9._-]+(?:/[A-Za-z0-9._-]+)*")
_COMMIT_ID = re.compile(r"[0-9a-f]{40}")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_PR_REF = re.compile(r"refs/pr/([1-9][0-9]*)")


class HubError(Exception):
    """An error the Hub answers with an HTTP status, a message and maybe an ``X-Error-Code``.

    >>> HubError(404, "no such repo", code="RepoNotFound").status
    404
    """

    def __init__(self, status: int, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code


def git_blob_oid(content: bytes) -> str:
    """The git object id (sha1) of a blob with this content.

    >>> git_blob_oid(b"")
    'e69de29bb2d1d6434b8b29ae775ad8c2e48c5391'
    """
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


def lfs_pointer(sha256: str, size: int) -> bytes:
    """The git-lfs pointer file that git stores in place of a large file.

    >>> lfs_pointer("0" * 64, 3).splitlines()[-1]
    b'size 3'
    """
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()


def utc_now() -> str:
    """The current time in the Hub's date format (milliseconds, ``Z``)."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


@dataclass(frozen=True)
class FileEntry:
    """One file of a snapshot: content hash, size, git oid, and whether it is an LFS file.

    >>> FileEntry.regular(b"hi").size, FileEntry.large("0" * 64, 5).lfs
    (2, True)
    """

    sha256: str
    size: int
    oid: str
    lfs: bool

    @classmethod
    def regular(cls, content: bytes) -> FileEntry:
        return cls(hashlib.sha256(content).hexdigest(), len(content), git_blob_oid(content), lfs=False)

    @classmethod
    def large(cls, sha256: str, size: int) -> FileEntry:
        return cls(sha256, size, git_blob_oid(lfs_pointer(sha256, size)), lfs=True)

    @property
    def pointer_size(self) -> int:
        return len(lfs_pointer(self.sha256, self.size))

    def to_json(self) -> dict[str, Any]:
        return {"sha256": self.sha256, "size": self.size, "oid": self.oid, "lfs": self.lfs}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FileEntry:
        return cls(data["sha256"], data["size"], data["oid"], data["lfs"])


@dataclass(frozen=True)
class Snapshot:
    """An immutable commit: its id, first line and body, date, author, parents and files."""

    id: str
    title: str
    message: str
    date: str
    author: str
    parents: tuple[str, ...]
    files: dict[str, FileEntry]

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "title": self.title,
            "message": self.message,
            "date": self.date,
            "author": self.author,
            "parents": list(self.parents),
            "files": {path: entry.to_json() for path, entry in sorted(self.files.items())},
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Snapshot:
        files = {path: FileEntry.from_json(entry) for path, entry in data["files"].items()}
        return cls(
            data["id"], data["title"], data["message"], data["date"], data["author"], tuple(data["parents"]), files
        )

    def folder_exists(self, folder: str) -> bool:
        return folder == "" or any(path.startswith(folder + "/") for path in self.files)

    def under(self, path: str) -> dict[str, FileEntry]:
        """The file at ``path`` or every file inside the folder ``path`` ("" is the root)."""
        prefix = path + "/" if path else ""
        return {p: e for p, e in self.files.items() if p == path or p.startswith(prefix)}


def folder_oid(snapshot: Snapshot, folder: str) -> str:
    """A stable id for a folder's content (stands in for git's tree id)."""
    listing = "".join(f"{path}\0{entry.oid}\n" for path, entry in sorted(snapshot.under(folder).items()))
    return hashlib.sha1(listing.encode()).hexdigest()


def list_folder(snapshot: Snapshot, folder: str, *, recursive: bool) -> list[tuple[str, FileEntry | None]]:
    """``(path, entry)`` for the files and folders in ``folder``; folders have entry ``None``.

    Raises ``HubError(404, EntryNotFound)`` if ``folder`` is not a folder of the snapshot.
    """
    if not snapshot.folder_exists(folder):
        raise HubError(404, f"Folder {folder!r} does not exist in commit {snapshot.id}", "EntryNotFound")
    prefix = folder + "/" if folder else ""
    items: dict[str, FileEntry | None] = {}
    for path, entry in snapshot.files.items():
        if not path.startswith(prefix):
            continue
        parts = path[len(prefix) :].split("/")
        depth = len(parts) if recursive else 1
        for i in range(1, min(depth, len(parts) - 1) + 1):
            items[prefix + "/".join(parts[:i])] = None
        if len(parts) == 1 or recursive:
            items[path] = entry
    return sorted(items.items())


def _matches(pattern: str, path: str) -> bool:
    # gitattributes: a pattern without a slash matches the file name at any depth.
    if "/" not in pattern.strip("/"):
        return fnmatch.fnmatchcase(path.rsplit("/", 1)[-1], pattern)
    return fnmatch.fnmatchcase(path, pattern.lstrip("/").replace("**/", "*"))


def lfs_patterns(gitattributes: str) -> list[str]:
    """The patterns that a ``.gitattributes`` file sends through git-lfs.

    >>> lfs_patterns("*.bin filter=lfs diff=lfs\\n*.txt text\\n")
    ['*.bin']
    """
    patterns = []
    for line in gitattributes.splitlines():
        fields = line.split()
        if fields and not fields[0].startswith("#") and "filter=lfs" in fields[1:]:
            patterns.append(fields[0])
    return patterns


def upload_mode(path: str, *, size: int, sample: bytes, gitattributes: str) -> Literal["lfs", "regular"]:
    """How the Hub stores an upload: ``"lfs"`` for large-file patterns, big or binary files.

    >>> upload_mode("README.md", size=10, sample=b"# hi", gitattributes="")
    'regular'
    >>> upload_mode("mask.raw", size=10, sample=b"\\x00\\x01", gitattributes="")
    'lfs'
    """
    patterns = (*_ALWAYS_LFS, *lfs_patterns(gitattributes))
    if size > REGULAR_FILE_MAX_BYTES or is_binary(sample) or any(_matches(p, path) for p in patterns):
        return "lfs"
    return "regular"


def is_binary(sample: bytes) -> bool:
    """Git's test: a NUL byte near the start means binary.

    >>> is_binary(b"text"), is_binary(b"\\x89PNG\\r\\n\\x1a\\n\\x00")
    (False, True)
    """
    return b"\0" in sample[:8000]


def check_repo_id(repo_id: str) -> str:
    """Validate a ``namespace/name`` repo id as the Hub does; a 400 naming it otherwise.

    Runs on the id *after* percent-decoding, so ``..%2Fx`` or ``%2Ftmp`` arrive here as
    ``../x`` and ``/tmp`` and are refused like any other character the Hub does not allow.

    >>> check_repo_id("user/tiny-bert_v1.2")
    'user/tiny-bert_v1.2'
    >>> check_repo_id("user/../../etc")
    Traceback (most recent call last):
    ...
    tests.hub_server.store.HubError: Invalid repository id 'user/../../etc': expected namespace/name, ...
    """
    halves = repo_id.split("/")
    if (
        len(halves) != 2
        or not all(_REPO_NAME.fullmatch(half) for half in halves)
        or "--" in repo_id
        or ".." in repo_id
        or repo_id.endswith(".git")
    ):
        raise HubError(
            400,
            f"Invalid repository id {repo_id!r}: expected namespace/name, each 1-96 characters of "
            "[A-Za-z0-9._-], not starting or ending with '-' or '.', without '--', '..' or a '.git' ending",
        )
    return repo_id


def repo_not_found(repo_type: str, repo_id: str) -> HubError:
    """The Hub's answer for a repository that does not exist *or* that the caller may not see.

    One message for both, so that a private repository's existence does not leak.
    """
    return HubError(404, f"Repository not found: {repo_type} {repo_id}", "RepoNotFound")


def check_path(path: str) -> str:
    """Validate a path inside a repository, naming it in the error.

    >>> check_path("nested/model.safetensors")
    'nested/model.safetensors'
    >>> check_path("a/../../b")
    Traceback (most recent call last):
    ...
    tests.hub_server.store.HubError: Invalid path in repository: 'a/../../b'
    """
    parts = path.split("/")
    if not path or "\\" in path or "\0" in path or any(part in ("", ".", "..", ".git") for part in parts):
        raise HubError(400, f"Invalid path in repository: {path!r}")
    return path


@dataclass(frozen=True)
class PutFile:
    """Commit operation: add or replace a file."""

    path: str
    entry: FileEntry


@dataclass(frozen=True)
class DeleteFile:
    """Commit operation: delete one file."""

    path: str


@dataclass(frozen=True)
class DeleteFolder:
    """Commit operation: delete every file under a folder."""

    path: str


Operation = PutFile | DeleteFile | DeleteFolder


def apply_operations(files: dict[str, FileEntry], operations: Iterable[Operation]) -> dict[str, FileEntry]:
    """The files after ``operations``; a missing deletion target is a 404 ``EntryNotFound``.

    Works on a copy: the caller's ``files`` are untouched whatever fails.
    """
    files = dict(files)
    for op in operations:
        if isinstance(op, PutFile):
            files[check_path(op.path)] = op.entry
        elif isinstance(op, DeleteFile):
            if files.pop(check_path(op.path), None) is None:
                raise HubError(404, f"A file with this name doesn't exist: {op.path!r}", "EntryNotFound")
        else:
            prefix = check_path(op.path.strip("/")) + "/"
            doomed = [path for path in files if path.startswith(prefix)]
            if not doomed:
                raise HubError(404, f"A folder with this name doesn't exist: {op.path!r}", "EntryNotFound")
            for path in doomed:
                del files[path]
    for path in files:
        parents = path.split("/")[:-1]
        for i in range(1, len(parents) + 1):
            if "/".join(parents[:i]) in files:
                raise HubError(400, f"Path {path!r} needs a folder where the file {'/'.join(parents[:i])!r} is")
    return files


def _write_json(path: Path, data: Any) -> None:
    """Write atomically so concurrent readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    with os.fdopen(fd, "w") as f:
        json.dump(data, f)
    os.replace(tmp, path)


@dataclass(frozen=True)
class CommitResult:
    """What a commit produced: its id, and the pull-request number when one was opened."""

    oid: str
    pr_num: int | None


class Repo:
    """One repository on disk. Reads need no lock: refs are replaced atomically, commits never change."""

    def __init__(self, store: HubStore, repo_type: str, repo_id: str) -> None:
        if repo_type not in REPO_TYPES:
            raise HubError(400, f"Repository type {repo_type!r} is not supported (only {', '.join(REPO_TYPES)})")
        self.store = store
        self.repo_type = repo_type
        self.repo_id = check_repo_id(repo_id)
        self.path = store.inside(store.root / "repos" / f"{repo_type}s" / repo_id)

    @property
    def namespace(self) -> str:
        """The user who owns the repository (the part of its id before the slash)."""
        return self.repo_id.split("/")[0]

    @property
    def private(self) -> bool:
        return bool(self.meta["private"])

    @property
    def meta(self) -> dict[str, Any]:
        meta: dict[str, Any] = json.loads((self.path / "repo.json").read_text())
        return meta

    def _save_meta(self, meta: dict[str, Any]) -> None:
        _write_json(self.path / "repo.json", meta)

    def resolve(self, revision: str) -> str:
        """The commit id a branch, tag, ``refs/pr/N``, ``refs/heads/x`` or commit id points to."""
        meta: dict[str, dict[str, str]] = self.meta
        name = revision.removeprefix("refs/heads/")
        if name in meta["branches"]:
            return meta["branches"][name]
        tag = revision.removeprefix("refs/tags/")
        if tag in meta["tags"]:
            return meta["tags"][tag]
        if (pr := _PR_REF.fullmatch(revision)) and pr[1] in meta["pulls"]:
            return meta["pulls"][pr[1]]
        if _COMMIT_ID.fullmatch(revision) and (self.path / "commits" / f"{revision}.json").exists():
            return revision
        raise HubError(404, f"Invalid rev id: {revision} in {self.repo_type} repo {self.repo_id}", "RevisionNotFound")

    def read_commit(self, oid: str) -> Snapshot:
        return Snapshot.from_json(json.loads((self.path / "commits" / f"{oid}.json").read_text()))

    def snapshot(self, revision: str) -> Snapshot:
        return self.read_commit(self.resolve(revision))

    def history(self, revision: str) -> list[Snapshot]:
        """Commits reachable from ``revision`` along first parents, newest first."""
        commits = [self.snapshot(revision)]
        while commits[-1].parents:
            commits.append(self.read_commit(commits[-1].parents[0]))
        return commits

    def last_commit_touching(self, revision: str, path: str) -> Snapshot:
        """The newest commit that changed the file or folder ``path``."""
        history = self.history(revision)
        for newer, older in itertools.pairwise(history):
            if newer.under(path) != older.under(path):
                return newer
        return history[-1]

    def refs(self) -> dict[str, dict[str, str]]:
        meta = self.meta
        return {"branches": meta["branches"], "tags": meta["tags"], "pulls": meta["pulls"]}

    def _new_commit(
        self, files: dict[str, FileEntry], parents: Sequence[str], title: str, message: str, author: str
    ) -> str:
        oid = hashlib.sha1(uuid.uuid4().bytes + json.dumps(sorted(files)).encode()).hexdigest()
        commit = Snapshot(oid, title, message, utc_now(), author, tuple(parents), files)
        _write_json(self.path / "commits" / f"{oid}.json", commit.to_json())
        return oid

    def commit(
        self,
        revision: str,
        operations: Sequence[Operation],
        *,
        title: str,
        author: str,
        message: str = "",
        parent_commit: str | None = None,
        create_pr: bool = False,
    ) -> CommitResult:
        """Apply ``operations`` on top of branch or PR ref ``revision`` (or open a PR from it).

        All or nothing: every check runs before anything is written, and the ref moves in
        one atomic file replacement, so a refused commit leaves every ref where it was.
        A stale ``parent_commit`` gets 412, as on the Hub, so clients refresh and retry.
        """
        for op in operations:
            if isinstance(op, PutFile) and not self.store.has_blob(op.entry.sha256):
                raise HubError(400, f"Content of {op.path!r} (sha256 {op.entry.sha256}) was never uploaded")
        with self.store.lock:
            meta = self.meta
            branch = revision.removeprefix("refs/heads/")
            pr = _PR_REF.fullmatch(revision)
            if branch in meta["branches"]:
                head = meta["branches"][branch]
            elif pr and not create_pr and pr[1] in meta["pulls"]:
                head = meta["pulls"][pr[1]]
            else:
                self.resolve(revision)  # 404 RevisionNotFound when it does not exist at all
                raise HubError(400, f"Can only commit to a branch or a pull-request ref, not {revision!r}")
            if parent_commit is not None and parent_commit != head:
                raise HubError(412, "A commit has happened since. Please refresh and try again.")
            files = apply_operations(self.read_commit(head).files, operations)
            oid = self._new_commit(files, [head], title, message, author)
            pr_num = None
            if create_pr:
                pr_num = max(map(int, meta["pulls"]), default=0) + 1
                meta["pulls"][str(pr_num)] = oid
            elif pr:
                meta["pulls"][pr[1]] = oid
            else:
                meta["branches"][branch] = oid
            self._save_meta(meta)
        return CommitResult(oid, pr_num)

    def create_branch(self, name: str, starting_point: str | None) -> None:
        """A new branch at ``starting_point`` (default: the head of main); 409 if it exists."""
        if not _BRANCH_NAME.fullmatch(name) or name.startswith("refs/") or ".." in name:
            raise HubError(400, f"Invalid branch name: {name!r}")
        with self.store.lock:
            meta = self.meta
            if name in meta["branches"]:
                raise HubError(409, f"Reference already exists: refs/heads/{name}")
            meta["branches"][name] = self.resolve(starting_point or DEFAULT_BRANCH)
            self._save_meta(meta)

    def delete_branch(self, name: str) -> None:
        """Delete a branch; the default branch cannot be deleted, a missing one is 404."""
        if name == DEFAULT_BRANCH:
            raise HubError(403, f"Cannot delete the default branch {DEFAULT_BRANCH!r}")
        with self.store.lock:
            meta = self.meta
            if meta["branches"].pop(name, None) is None:
                raise HubError(404, f"No branch {name!r} in {self.repo_type} repo {self.repo_id}", "RevisionNotFound")
            self._save_meta(meta)


class HubStore:
    """All repositories and blobs under one root folder.

    >>> import tempfile
    >>> store = HubStore(Path(tempfile.mkdtemp()))
    >>> store.put_blob(b"abc") == hashlib.sha256(b"abc").hexdigest()
    True
    """

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.lock = threading.RLock()
        (self.root / "blobs").mkdir(parents=True, exist_ok=True)

    def inside(self, path: Path) -> Path:
        """``path`` resolved, if it lies inside the root; a 400 otherwise.

        The last line of defence: ids and oids are validated before they become paths, and
        this catches whatever a validation might miss (``..``, an absolute part, a symlink).

        >>> import tempfile
        >>> store = HubStore(Path(tempfile.mkdtemp()))
        >>> store.inside(store.root / "repos" / "models" / "user" / "x") == store.root / "repos/models/user/x"
        True
        >>> store.inside(store.root / "repos" / ".." / "..")
        Traceback (most recent call last):
        ...
        tests.hub_server.store.HubError: Path ... is outside the local Hub's root ...
        """
        try:
            resolved = path.resolve()
        except (OSError, ValueError, RuntimeError) as e:  # a NUL byte, a symlink loop
            raise HubError(400, f"Path {str(path)!r} cannot be used: {e}") from e
        if not resolved.is_relative_to(self.root):
            raise HubError(400, f"Path {str(path)!r} is outside the local Hub's root {str(self.root)!r}")
        return resolved

    def blob_path(self, sha256: str) -> Path:
        if not isinstance(sha256, str) or not _SHA256.fullmatch(sha256):
            raise HubError(400, f"Invalid sha256 oid: {sha256!r}")
        return self.inside(self.root / "blobs" / sha256[:2] / sha256)

    def has_blob(self, sha256: str) -> bool:
        return self.blob_path(sha256).exists()

    def put_blob(self, content: bytes, expected_sha256: str | None = None) -> str:
        """Store ``content`` under its sha256; a mismatch with ``expected_sha256`` is a 400."""
        sha256 = hashlib.sha256(content).hexdigest()
        if expected_sha256 is not None and sha256 != expected_sha256:
            raise HubError(400, f"Uploaded content has sha256 {sha256}, expected {expected_sha256}")
        path = self.blob_path(sha256)
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
            with os.fdopen(fd, "wb") as f:
                f.write(content)
            os.replace(tmp, path)
        return sha256

    def repo(self, repo_type: str, repo_id: str) -> Repo:
        """An existing repository; 400 for an invalid id, 404 ``RepoNotFound`` if there is none."""
        repo = Repo(self, repo_type, repo_id)
        if not (repo.path / "repo.json").exists():
            raise repo_not_found(repo_type, repo_id)
        return repo

    def create_repo(self, repo_type: str, repo_id: str, *, private: bool, author: str) -> Repo:
        """A new repository whose first commit holds a Hub-like ``.gitattributes``; 409 if it exists."""
        repo = Repo(self, repo_type, repo_id)
        with self.lock:
            if (repo.path / "repo.json").exists():
                raise HubError(409, f"You already created this {repo_type} repo: {repo_id}")
            attributes = DEFAULT_GITATTRIBUTES.encode()
            self.put_blob(attributes)
            oid = repo._new_commit({".gitattributes": FileEntry.regular(attributes)}, [], "initial commit", "", author)
            branches = {DEFAULT_BRANCH: oid}
            repo._save_meta({"private": private, "createdAt": utc_now(), "branches": branches, "tags": {}, "pulls": {}})
        return repo
