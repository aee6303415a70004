"""The ``chronoverse`` command line."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import click

from chronoverse import __version__
from chronoverse.cli.admin import healthcheck_command, migrate_command, topics, users
from chronoverse.cli.config import ClientConfig, default_config_path
from chronoverse.cli.jobs import jobs, trigger
from chronoverse.cli.logs import logs
from chronoverse.cli.output import ApiErrorExit
from chronoverse.cli.secrets import secrets
from chronoverse.cli.volumes import volumes
from chronoverse.cli.workflows import workflows
from chronoverse.client import ApiError
from chronoverse.errors import ChronoverseError
from chronoverse.logconfig import configure_logging


class _Group(click.Group):
    """Shows an API error as its message and the bad fields, with exit status 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ApiError as exc:
            raise ApiErrorExit(exc) from exc


@click.group(
    cls=_Group,
    help="Chronoverse: scheduled HEARTBEAT and CONTAINER jobs with live logs.\n\n"
    "API commands find the server and token in --server/--token, then "
    "CHRONOVERSE_SERVER_URL/CHRONOVERSE_TOKEN, then the config file that "
    "`chronoverse login` writes. Admin commands (migrate, topics, users, secrets) read "
    "CHRONOVERSE_DATABASE_URL, CHRONOVERSE_KAFKA_BOOTSTRAP_SERVERS and "
    "CHRONOVERSE_SECRET_KEYS.",
)
@click.version_option(__version__)
@click.option(
    "--server",
    envvar="CHRONOVERSE_SERVER_URL",
    metavar="URL",
    help="API base URL [default: from the config file, else http://127.0.0.1:8080].",
)
@click.option(
    "--token", envvar="CHRONOVERSE_TOKEN", help="Bearer token [default: from the config file]."
)
@click.option(
    "--config",
    "config_path",
    envvar="CHRONOVERSE_CONFIG",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Config file [default: ~/.config/chronoverse/config.json].",
)
@click.pass_context
def cli(
    ctx: click.Context, server: str | None, token: str | None, config_path: Path | None
) -> None:
    configure_logging("WARNING", "text", service="cli")
    ctx.obj = ClientConfig(
        path=config_path or default_config_path(), server_url=server, token=token
    )


@cli.command(help="Create an account on the server.")
@click.option("--email", required=True)
@click.option("--password", prompt=True, hide_input=True, confirmation_prompt=True)
@click.pass_obj
def register(config: ClientConfig, email: str, password: str) -> None:
    with config.client(authenticated=False) as client:
        user = client.register(email, password)
    click.echo(f"registered {user['email']}; now run `chronoverse login --email {user['email']}`")


@cli.command(help="Log in and save the server URL and a token to the config file.")
@click.option("--email", required=True)
@click.option("--password", prompt=True, hide_input=True)
@click.pass_obj
def login(config: ClientConfig, email: str, password: str) -> None:
    with config.client(authenticated=False) as client:
        issued = client.login(email, password)
    config.save(server_url=config.resolved_server_url, token=issued["token"])
    click.echo(
        f"logged in to {config.resolved_server_url} as {email}; token saved to {config.path}"
    )


@cli.command(help="Revoke the token and remove it from the config file.")
@click.pass_obj
def logout(config: ClientConfig) -> None:
    with config.client() as client:
        client.logout()
    stored = config.stored()
    stored.pop("token", None)
    config.save(**stored)
    click.echo("logged out")


cli.add_command(workflows)
cli.add_command(trigger)
cli.add_command(jobs)
cli.add_command(logs)
cli.add_command(volumes)
cli.add_command(migrate_command)
cli.add_command(topics)
cli.add_command(users)
cli.add_command(secrets)
cli.add_command(healthcheck_command)


def main() -> None:
    try:
        cli(standalone_mode=True)
    except ChronoverseError as exc:
        logging.getLogger(__name__).debug("command failed", exc_info=exc)
        raise SystemExit(f"error: {exc}") from exc
