"""`chronoverse volumes …`: your named volumes, which CONTAINER payloads mount."""

from __future__ import annotations

import click

from chronoverse.cli.config import ClientConfig
from chronoverse.cli.output import json_option, print_json, print_table

VOLUME_COLUMNS = ("NAME", "SIZE", "LAST USED", "WORKFLOWS", "DOCKER VOLUME")


def human_size(size: int | None) -> str:
    """Bytes for people: 512 B, 1.5 KiB, 20.0 MiB; '?' before the first measurement."""
    if size is None:
        return "?"
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{size} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


@click.group(
    help="Your named volumes. A CONTAINER payload mounts one with "
    '`"volumes": [{"name": "cache", "path": "/data"}]`; it is created on first use and keeps '
    "its files between runs. Sizes are measured every minute or so."
)
def volumes() -> None:
    pass


@volumes.command("list", help="List your volumes with their sizes and the workflows using them.")
@json_option
@click.pass_obj
def list_(config: ClientConfig, as_json: bool) -> None:
    with config.client() as client:
        found = client.list_volumes()
    if as_json:
        print_json(found)
        return
    print_table(
        VOLUME_COLUMNS,
        [
            (
                v["name"],
                human_size(v["size_bytes"]),
                v["last_used_at"][:19].replace("T", " "),
                len(v["workflow_ids"]),
                v["docker_name"],
            )
            for v in found["volumes"]
        ],
    )


@volumes.command("rm", help="Delete a volume and its files (refused while a running job uses it).")
@click.argument("name")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.pass_obj
def rm(config: ClientConfig, name: str, yes: bool) -> None:
    if not yes:
        click.confirm(f"Delete volume {name!r} and its files?", abort=True)
    with config.client() as client:
        client.delete_volume(name)
    click.echo(f"deleted volume {name}")
