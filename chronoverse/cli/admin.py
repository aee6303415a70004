"""Administrative commands that talk to Postgres and Kafka directly: migrate, topics, users."""

from __future__ import annotations

import json

import click

from chronoverse.errors import ConfigurationError
from chronoverse.kafka.admin import ensure_topics, list_topics
from chronoverse.migrate import migrate
from chronoverse.settings import KafkaSettings, PostgresSettings


class AdminSettings(PostgresSettings, KafkaSettings):
    """What the administrative commands read from the environment."""

    token_ttl_days: int = 30


def _settings() -> AdminSettings:
    try:
        return AdminSettings.from_environ()
    except ConfigurationError as exc:
        raise click.UsageError(str(exc)) from exc


@click.command("migrate", help="Apply pending SQL migrations to CHRONOVERSE_DATABASE_URL.")
def migrate_command() -> None:
    applied = migrate(_settings().database_url)
    if applied:
        for migration in applied:
            click.echo(f"applied {migration.version:04d}_{migration.name}")
    else:
        click.echo("database is up to date")


@click.group(help="Kafka topics (CHRONOVERSE_KAFKA_BOOTSTRAP_SERVERS).")
def topics() -> None:
    pass


@topics.command("create", help="Create the topics Chronoverse uses (workflows, jobs, job_logs).")
@click.option(
    "--partitions",
    type=click.IntRange(min=1),
    default=None,
    help="Partitions per topic [default: CHRONOVERSE_KAFKA_TOPIC_PARTITIONS].",
)
def topics_create(partitions: int | None) -> None:
    settings = _settings()
    created = ensure_topics(settings, settings.all_topics(), partitions=partitions)
    click.echo(f"created: {', '.join(created)}" if created else "topics already exist")


@topics.command("list", help="List the broker's topics.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def topics_list(as_json: bool) -> None:
    names = sorted(list_topics(_settings()))
    click.echo(json.dumps(names) if as_json else "\n".join(names))


@click.group(help="Manage users directly in the database (for self-hosters).")
def users() -> None:
    pass


@users.command("create", help="Create a user and print a bearer token for it.")
@click.option("--email", required=True, help="The user's email address.")
@click.option(
    "--password",
    prompt=True,
    hide_input=True,
    confirmation_prompt=True,
    help="The password (prompted for when omitted; 8 to 1024 characters).",
)
def users_create(email: str, password: str) -> None:
    # Imported here: the server package is only needed by this command.
    from services.server.auth import Accounts
    from services.server.context import ServerContext
    from services.server.settings import Settings as ServerSettings

    settings = _settings()
    server_settings = ServerSettings.model_validate(
        {
            "database_url": settings.database_url,
            "token_ttl_days": settings.token_ttl_days,
            "database_pool_min_size": 0,
            "database_pool_max_size": 1,
        }
    )
    context = ServerContext(server_settings)
    context.open()
    try:
        accounts: Accounts = context.accounts
        user = accounts.register(email, password)
        issued = accounts.issue_token(email, token_name="cli users create")
    finally:
        context.close()
    click.echo(f"created user {user.email} ({user.id})")
    click.echo(f"token (shown once, expires {issued.expires_at:%Y-%m-%d}): {issued.token}")
