"""``chronoverse secrets``: make a key; encrypt the stored secret values again with a new one."""

from __future__ import annotations

import click

from chronoverse.cli.admin import AdminSettings
from chronoverse.secret_store import rotate_stored
from chronoverse.secrets import generate_key


@click.group(
    help="The keys that encrypt secret values (CONTAINER env, HEARTBEAT headers) in Postgres "
    "and Redis: CHRONOVERSE_SECRET_KEYS, comma-separated; the first key encrypts, every key "
    "decrypts."
)
def secrets() -> None:
    pass


@secrets.command(
    "generate-key",
    short_help="Print a new random key for CHRONOVERSE_SECRET_KEYS.",
    help="Print a new random key. Use it as CHRONOVERSE_SECRET_KEYS (the same value for the "
    "server, the workers and `chronoverse migrate`), or put it first to rotate keys. Keep it: "
    "values encrypted with a lost key cannot be read again.",
)
def generate_key_command() -> None:
    click.echo(generate_key())


@secrets.command(
    "rotate",
    short_help="Encrypt the stored secret values again with the first key.",
    help="""Encrypt every stored secret value again with the first key of
    CHRONOVERSE_SECRET_KEYS. Needs CHRONOVERSE_DATABASE_URL.

    \b
    To replace a key OLD with a new one:
      1. NEW=$(chronoverse secrets generate-key)
      2. set CHRONOVERSE_SECRET_KEYS=$NEW,$OLD for every service and restart them
      3. CHRONOVERSE_SECRET_KEYS=$NEW,$OLD chronoverse secrets rotate
      4. set CHRONOVERSE_SECRET_KEYS=$NEW everywhere and restart again

    Running it twice is harmless.""",
)
def rotate_command() -> None:
    settings = AdminSettings.from_environ()
    box = settings.secret_box()
    count = rotate_stored(settings.database_url, box)
    click.echo(f"encrypted the secret values of {count} workflows again with the first key")
