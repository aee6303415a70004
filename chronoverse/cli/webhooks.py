"""`chronoverse webhooks …`: endpoints that receive signed state flips, and their deliveries."""

from __future__ import annotations

import click

from chronoverse.cli.config import ClientConfig
from chronoverse.cli.output import json_option, print_json, print_table
from chronoverse.webhooks import WebhookEvent

EVENTS = [e.value for e in WebhookEvent]


def _when(value: str | None) -> str:
    return "" if value is None else value[:19].replace("T", " ")


@click.group(
    help="Webhooks: HTTP endpoints that receive a signed POST when a workflow starts failing, "
    "recovers or is terminated, or a build fails (never on every run). Deliveries are signed "
    "to the Standard Webhooks spec with the secret `add` prints once."
)
def webhooks() -> None:
    pass


@webhooks.command("add", help="Add an endpoint; prints its signing secret, shown only this once.")
@click.argument("url")
@click.option(
    "--event",
    "events",
    multiple=True,
    required=True,
    type=click.Choice(EVENTS),
    help="An event to send (repeat for several).",
)
@click.option("--workflow", "workflow_id", help="Only this workflow (default: all of yours).")
@json_option
@click.pass_obj
def add(
    config: ClientConfig, url: str, events: tuple[str, ...], workflow_id: str | None, as_json: bool
) -> None:
    with config.client() as client:
        created = client.create_webhook(url, list(dict.fromkeys(events)), workflow_id)
    if as_json:
        print_json(created)
        return
    click.echo(f"added webhook {created['id']} -> {created['url']}")
    click.echo(f"events: {', '.join(created['events'])}")
    click.echo(f"signing secret (shown only now): {created['secret']}")


@webhooks.command("list", help="List your endpoints, newest first (secrets are never shown).")
@click.option("--limit", type=click.IntRange(1, 200), help="Endpoints per page.")
@click.option("--cursor", help="`next_cursor` of the previous page.")
@json_option
@click.pass_obj
def list_(config: ClientConfig, limit: int | None, cursor: str | None, as_json: bool) -> None:
    with config.client() as client:
        page = client.list_webhooks(limit=limit, cursor=cursor)
    if as_json:
        print_json(page)
        return
    print_table(
        ("ID", "URL", "EVENTS", "WORKFLOW", "CREATED"),
        [
            (
                w["id"],
                w["url"],
                ",".join(w["events"]),
                w["workflow_id"] or "*",
                _when(w["created_at"]),
            )
            for w in page["webhooks"]
        ],
    )
    if page["next_cursor"]:
        click.echo(f"more: --cursor {page['next_cursor']}")


@webhooks.command("rm", help="Delete an endpoint and its deliveries.")
@click.argument("webhook_id")
@click.pass_obj
def rm(config: ClientConfig, webhook_id: str) -> None:
    with config.client() as client:
        client.delete_webhook(webhook_id)
    click.echo(f"deleted webhook {webhook_id}")


@webhooks.command("deliveries", help="An endpoint's deliveries, newest first, with every attempt.")
@click.argument("webhook_id")
@click.option("--limit", type=click.IntRange(1, 200), help="Deliveries per page.")
@click.option("--cursor", help="`next_cursor` of the previous page.")
@json_option
@click.pass_obj
def deliveries(
    config: ClientConfig, webhook_id: str, limit: int | None, cursor: str | None, as_json: bool
) -> None:
    with config.client() as client:
        page = client.webhook_deliveries(webhook_id, limit=limit, cursor=cursor)
    if as_json:
        print_json(page)
        return
    rows = []
    for d in page["deliveries"]:
        for a in d["attempt_log"] or [None]:
            rows.append(
                (
                    d["id"],
                    d["event"],
                    d["status"],
                    "" if a is None else a["attempt"],
                    "" if a is None else _when(a["attempted_at"]),
                    "" if a is None or a["status_code"] is None else a["status_code"],
                    "" if a is None else f"{a['duration_ms']} ms",
                    "" if a is None or a["error"] is None else a["error"],
                )
            )
    print_table(("DELIVERY", "EVENT", "STATUS", "ATTEMPT", "AT", "CODE", "DURATION", "ERROR"), rows)
    if page["next_cursor"]:
        click.echo(f"more: --cursor {page['next_cursor']}")
