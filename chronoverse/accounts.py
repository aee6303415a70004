"""Accounts: users and bearer tokens (registration, login, authentication, revocation).

Shared by the server's edges and the CLI's `users create`, so it lives in the core package.

Passwords are hashed with Argon2id. A token is 32 random bytes shown once to the user; only its
SHA-256 is stored, so a database leak reveals no usable token.
"""

from __future__ import annotations

import enum
import hashlib
import re
import secrets
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from uuid import UUID

import psycopg

from chronoverse.domain import User
from chronoverse.errors import (
    AuthenticationError,
    BusyError,
    ConflictError,
    FieldError,
    ForbiddenError,
    InvalidFieldsError,
)
from chronoverse.postgres import QUERIES, Pool

if TYPE_CHECKING:
    from argon2 import PasswordHasher

TOKEN_PREFIX = "cv_"
# No @, control or space character (Python's str.isspace() set, spelled out for JSON Schema) in
# the parts; the OpenAPI document states the same pattern.
_EMAIL_CHAR = r"[^@\x00-\x20\x7f\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]"
EMAIL_PATTERN = rf"^{_EMAIL_CHAR}+@{_EMAIL_CHAR}+\.{_EMAIL_CHAR}+$"
_EMAIL = re.compile(EMAIL_PATTERN)
MIN_PASSWORD = 8
MAX_PASSWORD = 1024


class _Argon2:
    """Argon2id with argon2-cffi's defaults, loaded at the first password hashed or checked: a
    server holds argon2 (0.7 MiB with its first hash) only once someone registers or logs in."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._hasher: PasswordHasher | None = None
        self._dummy_hash = ""

    def _loaded(self) -> PasswordHasher:
        with self._lock:
            if self._hasher is None:
                from argon2 import PasswordHasher

                hasher = PasswordHasher()
                # Checked against when the email is unknown, so both failures take the same
                # time. Made here, before the first check of either kind.
                self._dummy_hash = hasher.hash("not a password of anyone")
                self._hasher = hasher
            return self._hasher

    def hash(self, password: str) -> str:
        return self._loaded().hash(password)

    def verify(self, stored: str | None, password: str) -> None:
        """Raise unless ``password`` matches ``stored``, or the dummy hash if nothing is stored."""
        from argon2.exceptions import InvalidHashError, VerificationError

        hasher = self._loaded()
        try:
            hasher.verify(self._dummy_hash if stored is None else stored, password)
        except (VerificationError, InvalidHashError) as exc:
            raise AuthenticationError("wrong email or password") from exc


_argon2 = _Argon2()


class RegistrationPolicy(enum.StrEnum):
    """Who may create an account through the API (``CHRONOVERSE_REGISTRATION``).

    Operators create accounts with ``chronoverse users create`` whatever the policy.
    """

    OPEN = "open"  # anyone who can reach the API
    CLOSED = "closed"  # nobody: operators create accounts
    FIRST_USER = "first-user"  # only while no user exists: whoever sets up the install


@dataclass(frozen=True, kw_only=True)
class Principal:
    """Who a request acts for: the user and the token it presented."""

    user_id: UUID
    token_id: UUID


@dataclass(frozen=True, kw_only=True)
class IssuedToken:
    token: str
    expires_at: datetime


@dataclass(frozen=True, kw_only=True)
class TokenInfo:
    """A token in force, as its owner may see it (never the token itself: only its hash is kept)."""

    id: UUID
    name: str
    created_at: datetime
    last_used_at: datetime | None
    expires_at: datetime | None

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> TokenInfo:
        return cls(
            id=row["id"],
            name=row["name"],
            created_at=row["created_at"],
            last_used_at=row["last_used_at"],
            expires_at=row["expires_at"],
        )


def hash_token(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def validate_credentials(email: object, password: object) -> tuple[str, str]:
    """Check the shape of an email and password; raise InvalidFieldsError naming the bad ones."""
    errors = []
    if not isinstance(email, str) or len(email) > 254 or not _EMAIL.fullmatch(email):
        errors.append(FieldError("email", "must be an email address"))
    if not isinstance(password, str) or not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        errors.append(
            FieldError("password", f"must be {MIN_PASSWORD} to {MAX_PASSWORD} characters")
        )
    if errors:
        raise InvalidFieldsError(errors)
    assert isinstance(email, str) and isinstance(password, str)
    return email, password


class Accounts:
    """Users and tokens over the pool.

    Argon2 costs about 64 MiB and tens of milliseconds per hash, so at most ``hash_slots`` hashes
    run at once; a caller that waits ``hash_wait_s`` for a slot gets :class:`BusyError`. No
    database connection is held while a password is hashed.
    """

    def __init__(
        self,
        pool: Pool,
        *,
        token_ttl: timedelta,
        hash_slots: int = 2,
        hash_wait_s: float = 5.0,
    ) -> None:
        self._pool = pool
        self._token_ttl = token_ttl
        self._hash_slots = threading.BoundedSemaphore(hash_slots)
        self._hash_wait_s = hash_wait_s

    @contextmanager
    def _hashing(self) -> Iterator[None]:
        if not self._hash_slots.acquire(timeout=self._hash_wait_s):
            raise BusyError("the server is busy checking other passwords; try again shortly")
        try:
            yield
        finally:
            self._hash_slots.release()

    def register(
        self, email: str, password: str, *, policy: RegistrationPolicy = RegistrationPolicy.OPEN
    ) -> User:
        """Create a user, if ``policy`` allows (operators' own calls pass the default, OPEN)."""
        email, password = validate_credentials(email, password)
        if policy is RegistrationPolicy.CLOSED:
            raise ForbiddenError(
                "registration_closed",
                "registration is closed; an operator creates accounts with "
                "`chronoverse users create`",
            )
        with self._hashing():
            password_hash = _argon2.hash(password)
        params = {"email": email, "password_hash": password_hash}
        with self._pool.connection() as conn:
            try:
                if policy is RegistrationPolicy.FIRST_USER:
                    conn.execute(QUERIES.lock_first_user)
                    row = conn.execute(QUERIES.insert_first_user, params).fetchone()
                else:
                    row = conn.execute(QUERIES.insert_user, params).fetchone()
            except psycopg.errors.UniqueViolation as exc:
                raise ConflictError("email_taken", f"{email} is already registered") from exc
        if row is None:  # FIRST_USER, and a user exists
            raise ForbiddenError(
                "registration_closed",
                "registration is closed: this installation has its first user; an operator "
                "creates more accounts with `chronoverse users create`",
            )
        return User.from_row(row)

    def login(self, email: str, password: str, *, token_name: str = "login") -> IssuedToken:
        with self._pool.connection() as conn:
            row = conn.execute(QUERIES.user_by_email, {"email": email}).fetchone()
        with self._hashing():
            _argon2.verify(str(row["password_hash"]) if row else None, password)
        if row is None:
            raise AuthenticationError("wrong email or password")
        with self._pool.connection() as conn:
            return self._issue(conn, UUID(str(row["id"])), token_name)

    def issue_token(self, email: str, *, token_name: str) -> IssuedToken:
        """A token for an existing user, without a password (the `users create` command)."""
        with self._pool.connection() as conn:
            row = conn.execute(QUERIES.user_by_email, {"email": email}).fetchone()
            if row is None:
                raise AuthenticationError(f"no user {email}")
            return self._issue(conn, UUID(str(row["id"])), token_name)

    def create_token(self, user_id: UUID, *, token_name: str) -> IssuedToken:
        """Another token for a signed-in user (an API token made on the profile page)."""
        with self._pool.connection() as conn:
            return self._issue(conn, user_id, token_name)

    def _issue(
        self, conn: psycopg.Connection[dict[str, object]], user_id: UUID, name: str
    ) -> IssuedToken:
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        expires_at = datetime.now(UTC) + self._token_ttl
        conn.execute(
            QUERIES.insert_token,
            {
                "user_id": user_id,
                "token_hash": hash_token(token),
                "name": name,
                "expires_at": expires_at,
            },
        )
        return IssuedToken(token=token, expires_at=expires_at)

    def authenticate(self, authorization: str | None) -> Principal:
        """Resolve an ``Authorization: Bearer <token>`` value; raise AuthenticationError."""
        if not authorization:
            raise AuthenticationError()
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise AuthenticationError("the Authorization header must be 'Bearer <token>'")
        with self._pool.connection() as conn:
            row = conn.execute(
                QUERIES.authenticate_token, {"token_hash": hash_token(token.strip())}
            ).fetchone()
        if row is None:
            raise AuthenticationError("the token is unknown, expired or revoked")
        return Principal(user_id=UUID(str(row["user_id"])), token_id=UUID(str(row["id"])))

    def revoke(self, principal: Principal) -> None:
        self.revoke_token(principal.user_id, principal.token_id)

    def revoke_token(self, user_id: UUID, token_id: UUID) -> bool:
        """Revoke one of the user's tokens; False when it is not theirs or already revoked."""
        with self._pool.connection() as conn:
            row = conn.execute(
                QUERIES.revoke_token, {"token_id": token_id, "user_id": user_id}
            ).fetchone()
        return row is not None

    def tokens(self, user_id: UUID) -> list[TokenInfo]:
        """The user's tokens in force (not revoked, not expired), newest first."""
        with self._pool.connection() as conn:
            rows = conn.execute(QUERIES.list_tokens, {"user_id": user_id}).fetchall()
        return [TokenInfo.from_row(row) for row in rows]
