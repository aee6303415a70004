"""The ``chronoverse`` command line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from chronoverse import __version__
from chronoverse.cli.admin import healthcheck_command, migrate_command, topics, users
from chronoverse.cli.analytics import analytics
from chronoverse.cli.config import ClientConfig, default_config_path
from chronoverse.cli.dlq import dlq
from chronoverse.cli.errors import json_requested, reported
from chronoverse.cli.jobs import jobs, trigger
from chronoverse.cli.logs import logs
from chronoverse.cli.notifications import me, notifications
from chronoverse.cli.secrets import secrets
from chronoverse.cli.volumes import volumes
from chronoverse.cli.webhooks import webhooks
from chronoverse.cli.workflows import workflows
from chronoverse.client import ApiError
from chronoverse.logconfig import configure_logging

_JSON = "chronoverse.json"


class _Group(click.Group):
    """Reports every expected failure one way: text on stderr, or JSON on stdout with --json.

    Whether JSON was asked for is read from the raw arguments, so that a usage error (an
    unknown option, a missing value) is JSON too when the line says ``--json``.
    """

    def make_context(
        self,
        info_name: str | None,
        args: list[str],
        parent: click.Context | None = None,
        **extra: Any,
    ) -> click.Context:
        as_json = json_requested(args)
        try:
            ctx = super().make_context(info_name, args, parent, **extra)
        except Exception as exc:
            _report(exc, as_json=as_json)
            raise
        ctx.meta[_JSON] = as_json
        return ctx

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except Exception as exc:
            _report(exc, as_json=bool(ctx.meta.get(_JSON)))
            raise


def _report(exc: BaseException, *, as_json: bool) -> None:
    """Raise what click should show instead of ``exc``, if anything; else return."""
    shown = reported(exc, as_json=as_json)
    if shown is not exc:
        raise shown from exc


@click.group(
    cls=_Group,
    help="Chronoverse: scheduled HEARTBEAT and CONTAINER jobs with live logs.\n\n"
    "API commands find the server and token in --server/--token, then "
    "CHRONOVERSE_SERVER_URL/CHRONOVERSE_TOKEN, then the config file that "
    "`chronoverse login` writes. Admin commands (migrate, topics, users, secrets) read "
    "CHRONOVERSE_DATABASE_URL, CHRONOVERSE_KAFKA_BOOTSTRAP_SERVERS and "
    "CHRONOVERSE_SECRET_KEYS.\n\n"
    "Commands that print a resource or a list take --json (after the command name): the "
    "result as JSON on stdout, and on any failure the API's error object, "
    '{"error": {"code", "message", "details"}}, on stdout too, with exit status 1 '
    "(2 for a usage error).",
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
    config.save(
        {**config.stored(), "server_url": config.resolved_server_url, "token": issued["token"]}
    )
    click.echo(
        f"logged in to {config.resolved_server_url} as {email}; token saved to {config.path}"
    )


@cli.command(
    help="Revoke the token and remove it from the config file. A token given by --token or "
    "CHRONOVERSE_TOKEN is revoked, and the saved one, if another, is kept."
)
@click.pass_obj
def logout(config: ClientConfig) -> None:
    token = config.resolved_token
    with config.client() as client:
        try:
            client.logout()
        except ApiError as exc:
            # Already expired or revoked: nothing to revoke, but still forget it.
            if exc.status != 401:
                raise
    stored = config.stored()
    # A token given by --token or CHRONOVERSE_TOKEN is not the saved one: keep the saved one.
    if stored.get("token") == token:
        config.save({key: value for key, value in stored.items() if key != "token"})
    click.echo("logged out")


cli.add_command(workflows)
cli.add_command(trigger)
cli.add_command(jobs)
cli.add_command(logs)
cli.add_command(volumes)
cli.add_command(webhooks)
cli.add_command(notifications)
cli.add_command(me)
cli.add_command(analytics)
cli.add_command(migrate_command)
cli.add_command(topics)
cli.add_command(dlq)
cli.add_command(users)
cli.add_command(secrets)
cli.add_command(healthcheck_command)


def main() -> None:
    cli()
