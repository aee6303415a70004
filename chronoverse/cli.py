"""The ``chronoverse`` command line."""

from __future__ import annotations

import json
import logging

import click

from chronoverse import __version__
from chronoverse.domain import Topic
from chronoverse.errors import ChronoverseError, ConfigurationError
from chronoverse.kafka.admin import ensure_topics, list_topics
from chronoverse.logconfig import configure_logging
from chronoverse.migrate import migrate
from chronoverse.settings import KafkaSettings, PostgresSettings


class CliSettings(PostgresSettings, KafkaSettings):
    """What the administrative commands read from the environment."""


def _settings(ctx: click.Context) -> CliSettings:
    settings = ctx.obj
    assert isinstance(settings, CliSettings)
    return settings


@click.group(help="Chronoverse: scheduled HEARTBEAT and CONTAINER jobs with live logs.")
@click.version_option(__version__)
@click.pass_context
def cli(ctx: click.Context) -> None:
    try:
        settings = CliSettings.from_environ()
    except ConfigurationError as exc:
        raise click.UsageError(str(exc)) from exc
    configure_logging(settings.log_level, "text", service="cli")
    ctx.obj = settings


@cli.command("migrate", help="Apply pending SQL migrations to CHRONOVERSE_DATABASE_URL.")
@click.pass_context
def migrate_command(ctx: click.Context) -> None:
    applied = migrate(_settings(ctx).database_url)
    if applied:
        for migration in applied:
            click.echo(f"applied {migration.version:04d}_{migration.name}")
    else:
        click.echo("database is up to date")


@cli.group(help="Kafka topics.")
def topics() -> None:
    pass


@topics.command("create", help="Create the topics Chronoverse uses (workflows, jobs, job_logs).")
@click.option(
    "--partitions",
    type=click.IntRange(min=1),
    default=None,
    help="Partitions per topic [default: CHRONOVERSE_KAFKA_TOPIC_PARTITIONS].",
)
@click.pass_context
def topics_create(ctx: click.Context, partitions: int | None) -> None:
    created = ensure_topics(_settings(ctx), [t.value for t in Topic], partitions=partitions)
    click.echo(f"created: {', '.join(created)}" if created else "topics already exist")


@topics.command("list", help="List the broker's topics.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def topics_list(ctx: click.Context, as_json: bool) -> None:
    names = sorted(list_topics(_settings(ctx)))
    click.echo(json.dumps(names) if as_json else "\n".join(names))


def main() -> None:
    try:
        cli(standalone_mode=True)
    except ChronoverseError as exc:
        logging.getLogger(__name__).debug("command failed", exc_info=exc)
        raise SystemExit(f"error: {exc}") from exc
