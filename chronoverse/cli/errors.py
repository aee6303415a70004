"""How the CLI reports a failure: one line (and the bad fields) on stderr for people, or with
``--json`` the API's error object on stdout for scripts; exit status 1, or 2 for usage errors."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import IO, Any

import click
import psycopg

from chronoverse.client import ApiError
from chronoverse.errors import (
    AuthenticationError,
    ChronoverseError,
    ConfigurationError,
    ConflictError,
    InvalidFieldsError,
    KafkaError,
    MigrationError,
    NotFoundError,
)
from chronoverse.secrets import SecretError

JSON_FLAG = "--json"


class CliError(click.ClickException):
    """A failure with the API's error shape: a stable ``code``, a message and the bad fields.

    ``extra`` adds top-level keys to the JSON form (e.g. the workflow a wait ended on);
    ``brief`` shows the message alone to people, when it already says what the details say.
    """

    def __init__(
        self,
        code: str,
        message: str,
        details: Sequence[Mapping[str, Any]] = (),
        *,
        extra: Mapping[str, Any] | None = None,
        brief: bool = False,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.details = [dict(d) for d in details]
        self.extra = dict(extra or {})
        self.brief = brief

    def format_message(self) -> str:
        if self.brief:
            return self.message
        fields = [f"  {d.get('field')}: {d.get('message')}" for d in self.details]
        return "\n".join([self.message, *fields])

    def as_json(self) -> dict[str, Any]:
        error = {"code": self.code, "message": self.message, "details": self.details}
        return {"error": error, **self.extra}


class CliUsageError(CliError):
    """The command line itself is wrong (exit status 2, as click's usage errors)."""

    exit_code = 2


class JsonErrorExit(click.ClickException):
    """A :class:`CliError` shown as JSON on stdout, for a command run with ``--json``."""

    def __init__(self, error: CliError) -> None:
        super().__init__(error.message)
        self.error = error

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(json.dumps(self.error.as_json(), indent=2, sort_keys=True), file=file)


class JsonUsageErrorExit(JsonErrorExit):
    exit_code = 2


def json_requested(args: Sequence[str]) -> bool:
    """Whether the command line asks for JSON: known before (and even when) parsing fails."""
    options = list(args)
    if "--" in options:
        options = options[: options.index("--")]
    return JSON_FLAG in options


def to_cli_error(exc: BaseException) -> CliError | None:
    """The error as the CLI reports it; None for what is not an expected failure."""
    match exc:
        case CliError():
            return exc
        case ApiError():
            return CliError(exc.code, exc.message, exc.details)
        case click.UsageError():
            return CliUsageError("usage", exc.format_message())
        case click.ClickException():
            return CliError("error", exc.format_message())
        case click.Abort():
            return CliError("aborted", "aborted")
        case ConfigurationError():
            # One line that names the setting; the JSON form names it as the bad field too.
            details = [{"field": exc.setting, "message": exc.message}]
            return CliError("invalid_setting", str(exc), details, brief=True)
        case InvalidFieldsError():
            return CliError("invalid_fields", "invalid fields", [e.as_dict() for e in exc.errors])
        case ConflictError():
            return CliError(exc.code, exc.message)
        case NotFoundError():
            return CliError("not_found", str(exc))
        case AuthenticationError():
            return CliError("unauthenticated", exc.message)
        case KafkaError():
            return CliError("kafka_error", str(exc))
        case MigrationError():
            return CliError("migration_failed", str(exc))
        case SecretError():
            return CliError("secret_unreadable", str(exc))
        case psycopg.OperationalError():
            # libpq's messages run over several lines; the first says what failed.
            first = (str(exc).strip().splitlines() or ["connection failed"])[0]
            return CliError("database_error", f"database: {first}")
        case ChronoverseError():
            return CliError("error", str(exc))
    return None


def reported(exc: BaseException, *, as_json: bool) -> BaseException:
    """What to raise instead of ``exc`` so that click shows it the CLI's way.

    In text mode click's own usage errors and aborts are kept: they show the usage line.
    """
    if not as_json and isinstance(exc, click.UsageError | click.Abort):
        return exc
    error = to_cli_error(exc)
    if error is None:
        return exc
    if not as_json:
        return error
    return JsonUsageErrorExit(error) if isinstance(error, CliUsageError) else JsonErrorExit(error)
