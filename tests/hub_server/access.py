"""Who is asking and what they may do: tokens, private repositories, write rights, upload links.

The local Hub enforces what the Hub enforces, so that tests of private pushes and token
handling can fail. Each user has one token; a request carries it as ``Authorization: Bearer
<token>``. A user owns the namespace of their name (there are no organizations).

- An unknown token is refused (401) on every request, as on the Hub, even where none is needed.
- Reading a public repository needs no token; a private one is visible to its owner only, and
  to anyone else it is a 404 ``RepoNotFound`` exactly like a repository that does not exist.
- Writing needs a token (401 without one) of the namespace's owner (403 for another user).
- Large-file uploads go, as on the Hub, to the link the git-lfs batch answer hands out, which
  the client calls without its token; the link carries a signature instead, as a presigned
  storage URL does.

    >>> access = Access({"user": "hf_a", "other-user": "hf_b"})
    >>> access.authenticate("Bearer hf_b"), access.authenticate(None)
    ('other-user', None)
    >>> access.writer(None)
    Traceback (most recent call last):
    ...
    tests.hub_server.store.HubError: Writing to the Hub needs a token: send 'Authorization: Bearer <token>'
    >>> access.check_write("other-user", "user")
    Traceback (most recent call last):
    ...
    tests.hub_server.store.HubError: User 'other-user' may not write to the namespace 'user'
    >>> signature = access.sign_upload("model", "user/x", "0" * 64)
    >>> access.check_upload("model", "user/x", "0" * 64, signature)
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Mapping

from .store import HubError, Repo, check_repo_id, repo_not_found

INVALID_CREDENTIALS = "Invalid credentials in Authorization header"
"""The Hub's message for an unknown token; huggingface_hub tells it apart from a missing repo by it."""


class Access:
    """The users (name → token) of one server, and the rules above.

    >>> Access({"user": "hf_a", "other": "hf_a"})
    Traceback (most recent call last):
    ...
    ValueError: Users 'user' and 'other' have the same token; give each user its own
    """

    def __init__(self, tokens_by_user: Mapping[str, str]) -> None:
        self._users_by_token: dict[str, str] = {}
        for user, token in tokens_by_user.items():
            try:
                check_repo_id(f"{user}/x")  # a user name is a namespace
            except HubError as e:
                raise ValueError(f"Invalid user name {user!r}: {e.message}") from e
            if not token or any(c.isspace() for c in token):
                raise ValueError(f"Invalid token for user {user!r}: it must be non-empty, without spaces")
            if token in self._users_by_token:
                raise ValueError(
                    f"Users {self._users_by_token[token]!r} and {user!r} have the same token; give each user its own"
                )
            self._users_by_token[token] = user
        # Signs upload links; new for each server, so links do not outlive it.
        self._upload_key = secrets.token_bytes(32)

    def authenticate(self, authorization: str | None) -> str | None:
        """The user an ``Authorization`` header names; ``None`` without one; 401 for any other token."""
        if authorization is None:
            return None
        scheme, _, token = authorization.partition(" ")
        user = self._users_by_token.get(token.strip()) if scheme.lower() == "bearer" else None
        if user is None:
            raise HubError(401, INVALID_CREDENTIALS)
        return user

    @staticmethod
    def check_read(user: str | None, repo: Repo) -> Repo:
        """``repo`` if ``user`` may see it; otherwise the same 404 as a missing repository."""
        if repo.private and user != repo.namespace:
            raise repo_not_found(repo.repo_type, repo.repo_id)
        return repo

    @staticmethod
    def writer(user: str | None) -> str:
        """``user``, or a 401 when the request carried no token: every write needs one."""
        if user is None:
            raise HubError(401, "Writing to the Hub needs a token: send 'Authorization: Bearer <token>'")
        return user

    @staticmethod
    def check_write(user: str, namespace: str) -> None:
        """403 unless ``user`` owns ``namespace``."""
        if user != namespace:
            raise HubError(403, f"User {user!r} may not write to the namespace {namespace!r}")

    def sign_upload(self, repo_type: str, repo_id: str, oid: str) -> str:
        """The signature that lets anyone holding the link upload this one object to this repository."""
        message = f"{repo_type}\0{repo_id}\0{oid}".encode()
        return hmac.new(self._upload_key, message, hashlib.sha256).hexdigest()

    def check_upload(self, repo_type: str, repo_id: str, oid: str, signature: str | None) -> None:
        """401 unless ``signature`` is the one :meth:`sign_upload` gave for exactly this object."""
        if signature is None or not hmac.compare_digest(signature, self.sign_upload(repo_type, repo_id, oid)):
            raise HubError(
                401, f"Upload link for {oid} is not signed for {repo_type} {repo_id}: use the git-lfs batch's href"
            )
