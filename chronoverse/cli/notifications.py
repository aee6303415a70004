"""`chronoverse notifications …` and `chronoverse me`: what happened, and how much of it you see."""

from __future__ import annotations

from typing import Any

import click

from chronoverse.cli.config import ClientConfig
from chronoverse.cli.output import json_option, print_json, print_record, print_table

NOTIFICATION_COLUMNS = ("ID", "WHEN", "KIND", "READ", "TITLE", "MESSAGE")
PREFERENCES = ("ALERTS", "ALL", "NONE")


def _list(config: ClientConfig, *, unread: bool, limit: int | None, cursor: str | None) -> Any:
    with config.client() as client:
        return client.list_notifications(unread=unread or None, limit=limit, cursor=cursor)


def _print_page(page: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print_json(page)
        return
    print_table(
        NOTIFICATION_COLUMNS,
        [
            (
                n["id"],
                n["created_at"][:19].replace("T", " "),
                n["kind"],
                "yes" if n["read_at"] else "no",
                n["title"],
                n["message"],
            )
            for n in page["notifications"]
        ],
    )
    if page["next_cursor"]:
        click.echo(f"more: --cursor {page['next_cursor']}")


_unread = click.option("--unread", is_flag=True, help="Only the ones not marked read.")
_limit = click.option(
    "--limit", type=click.IntRange(1, 200), default=None, help="Items per page (default 50)."
)
_cursor = click.option("--cursor", default=None, help="Where the previous page ended.")


@click.group(
    invoke_without_command=True,
    help="Your notifications, newest first: builds, jobs that completed, failed or were "
    "canceled, workflows that started failing, recovered or were terminated. Which you are "
    "shown follows your preference (`chronoverse me --notification-preference`). Without a "
    "subcommand: `list`.",
)
@_unread
@_limit
@_cursor
@json_option
@click.pass_context
def notifications(
    ctx: click.Context, unread: bool, limit: int | None, cursor: str | None, as_json: bool
) -> None:
    if ctx.invoked_subcommand is None:
        page = _list(ctx.obj, unread=unread, limit=limit, cursor=cursor)
        _print_page(page, as_json)


@notifications.command("list", help="List your notifications, newest first.")
@_unread
@_limit
@_cursor
@json_option
@click.pass_obj
def list_(
    config: ClientConfig, unread: bool, limit: int | None, cursor: str | None, as_json: bool
) -> None:
    _print_page(_list(config, unread=unread, limit=limit, cursor=cursor), as_json)


@notifications.command(
    "read", help="Mark notifications read: these IDs (up to 200), or --all unread ones."
)
@click.argument("ids", nargs=-1)
@click.option("--all", "all_", is_flag=True, help="Every unread notification you are shown.")
@json_option
@click.pass_obj
def read(config: ClientConfig, ids: tuple[str, ...], all_: bool, as_json: bool) -> None:
    if bool(ids) == all_:
        raise click.UsageError("give notification IDs or --all, not both")
    with config.client() as client:
        done = client.mark_notifications_read(None if all_ else list(ids))
    if as_json:
        print_json(done)
        return
    click.echo(f"marked {done['marked']} notification(s) read")


@click.command(help="Show your account, or change your notification preference.")
@click.option(
    "--notification-preference",
    type=click.Choice(PREFERENCES),
    default=None,
    help="ALERTS (ALERT, ERROR and WARN, and recoveries), ALL, or NONE.",
)
@json_option
@click.pass_obj
def me(config: ClientConfig, notification_preference: str | None, as_json: bool) -> None:
    with config.client() as client:
        if notification_preference is None:
            profile = client.profile()
        else:
            profile = client.update_profile({"notification_preference": notification_preference})
    if as_json:
        print_json(profile)
        return
    print_record(profile)
