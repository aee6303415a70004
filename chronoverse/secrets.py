"""Secret values at rest: Fernet encryption (cryptography's MultiFernet, so keys rotate).

A sealed string is ``enc:v1:`` followed by a Fernet token; it is what Postgres stores for every
secret value of a payload (CONTAINER ``env``, HEARTBEAT ``headers``), and what no API response
ever shows: responses carry :data:`MASK` instead. Whole byte strings (cached definitions in Redis)
are sealed the same way; Fernet authenticates what it encrypts, so a tampered token is refused.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from chronoverse.domain import WorkflowKind
from chronoverse.errors import ChronoverseError, FieldError, InvalidFieldsError
from chronoverse.settings import SecretSettings

if TYPE_CHECKING:
    from cryptography.fernet import MultiFernet

MASK = "***"
SEALED_PREFIX = "enc:v1:"
# The payload field of each kind whose values are secret; its keys are not.
SECRET_FIELDS: Mapping[WorkflowKind, str] = {
    WorkflowKind.CONTAINER: "env",
    WorkflowKind.HEARTBEAT: "headers",
}


class SecretError(ChronoverseError):
    """A sealed value could not be opened: another key, or tampered with."""


def generate_key() -> str:
    """A new random Fernet key, as CHRONOVERSE_SECRET_KEYS takes it."""
    from cryptography.fernet import Fernet

    return Fernet.generate_key().decode()


def is_sealed(value: str) -> bool:
    return value.startswith(SEALED_PREFIX)


class SecretBox:
    """Seals with the first key; opens with any (rotation: put the new key first).

    cryptography's bindings cost about 6 MiB resident: they load at the first value sealed or
    opened, not when a service starts (the keys were checked with its settings).
    """

    def __init__(self, keys: Sequence[str]) -> None:
        if not keys:
            raise ValueError("at least one key is required")
        self._keys = tuple(keys)
        self._multi: MultiFernet | None = None

    @property
    def _fernet(self) -> MultiFernet:
        # Two threads may both build it on first use; either result is the same.
        if self._multi is None:
            from cryptography.fernet import Fernet, MultiFernet

            self._multi = MultiFernet([Fernet(key.encode()) for key in self._keys])
        return self._multi

    @classmethod
    def from_settings(cls, settings: SecretSettings) -> SecretBox:
        return cls(settings.secret_key_list)

    def encrypt(self, data: bytes) -> bytes:
        return self._fernet.encrypt(data)

    def decrypt(self, token: bytes, *, ttl_s: int | None = None) -> bytes:
        from cryptography.fernet import InvalidToken

        try:
            return self._fernet.decrypt(token, ttl=ttl_s)
        except InvalidToken as exc:
            raise SecretError(
                "cannot decrypt: sealed with a key that is not in CHRONOVERSE_SECRET_KEYS, "
                "or tampered with"
            ) from exc

    def seal(self, plain: str) -> str:
        return SEALED_PREFIX + self.encrypt(plain.encode()).decode()

    def open(self, sealed: str) -> str:
        if not is_sealed(sealed):
            raise SecretError("value is not sealed")
        return self.decrypt(sealed.removeprefix(SEALED_PREFIX).encode()).decode()

    def rotate(self, sealed: str) -> str:
        """The same value sealed with the first key (for key rotation)."""
        if not is_sealed(sealed):
            raise SecretError("value is not sealed")
        token = sealed.removeprefix(SEALED_PREFIX).encode()
        from cryptography.fernet import InvalidToken

        try:
            return SEALED_PREFIX + self._fernet.rotate(token).decode()
        except InvalidToken as exc:
            raise SecretError("cannot rotate: no key in CHRONOVERSE_SECRET_KEYS opens it") from exc


# --- payloads: pure functions over the stored (sealed) and the requested (plain) forms ----------


def _secrets_of(kind: WorkflowKind, payload: Mapping[str, Any]) -> tuple[str, dict[str, str]]:
    field = SECRET_FIELDS[kind]
    values = payload.get(field)
    return field, dict(values) if isinstance(values, Mapping) else {}


def seal_payload(
    box: SecretBox,
    kind: WorkflowKind,
    payload: Mapping[str, Any],
    previous: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """The stored form of a requested payload: every secret value sealed.

    A value equal to :data:`MASK` keeps the value ``previous`` (the stored payload) has for that
    key, so a client can send back what it read; with no such value it is an error.
    """
    field, values = _secrets_of(kind, payload)
    if field not in payload:
        return dict(payload)
    _, stored = _secrets_of(kind, previous or {})
    sealed: dict[str, str] = {}
    errors = []
    for key, value in values.items():
        if value != MASK:
            sealed[key] = box.seal(value)
        elif key in stored:
            kept = stored[key]
            # A value stored before the encryption migration ran is sealed now.
            sealed[key] = kept if is_sealed(kept) else box.seal(kept)
        else:
            errors.append(
                FieldError(
                    f"payload.{field}.{key}",
                    f"is the mask {MASK!r}, which keeps a stored value, but there is none for "
                    "this key: send the value",
                )
            )
    if errors:
        raise InvalidFieldsError(errors)
    return {**payload, field: sealed}


def open_payload(box: SecretBox, kind: WorkflowKind, stored: Mapping[str, Any]) -> dict[str, Any]:
    """The payload with plain secret values, for the workers that use them."""
    field, values = _secrets_of(kind, stored)
    if field not in stored:
        return dict(stored)
    opened: dict[str, str] = {}
    for key, value in values.items():
        if not is_sealed(value):
            raise SecretError(
                f"payload.{field}.{key} is stored unencrypted: run `chronoverse migrate`"
            )
        opened[key] = box.open(value)
    return {**stored, field: opened}


def mask_payload(kind: WorkflowKind, stored: Mapping[str, Any]) -> dict[str, Any]:
    """The payload as responses show it: secret values replaced by :data:`MASK`, keys kept."""
    field, values = _secrets_of(kind, stored)
    if field not in stored:
        return dict(stored)
    return {**stored, field: dict.fromkeys(values, MASK)}


def seal_unsealed(box: SecretBox, kind: WorkflowKind, stored: Mapping[str, Any]) -> dict[str, Any]:
    """A stored payload with its plain secret values (stored before encryption) sealed."""
    field, values = _secrets_of(kind, stored)
    if field not in stored:
        return dict(stored)
    return {
        **stored,
        field: {k: v if is_sealed(v) else box.seal(v) for k, v in values.items()},
    }


def rotate_payload(box: SecretBox, kind: WorkflowKind, stored: Mapping[str, Any]) -> dict[str, Any]:
    """A stored payload with every secret value sealed again with the first key."""
    field, values = _secrets_of(kind, stored)
    if field not in stored:
        return dict(stored)
    return {
        **stored,
        field: {k: box.rotate(v) if is_sealed(v) else box.seal(v) for k, v in values.items()},
    }
