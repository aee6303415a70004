"""`chronoverse dlq`: list and replay dead letters, the messages a consumer gave up on.

They talk to Kafka directly (CHRONOVERSE_KAFKA_BOOTSTRAP_SERVERS, CHRONOVERSE_KAFKA_TOPIC_PREFIX),
like the other admin commands. The format is described in :mod:`chronoverse.kafka.deadletters`.
"""

from __future__ import annotations

import base64
from typing import Any

import click

from chronoverse.cli.admin import AdminSettings
from chronoverse.cli.output import json_option, print_json, print_table
from chronoverse.domain import Topic
from chronoverse.kafka.deadletters import DeadLetterReader, StoredDeadLetter, replay

_TOPIC = click.argument("topic", type=click.Choice([t.value for t in Topic]))
_PREVIEW_CHARS = 60


def _text(raw: bytes | None) -> str | None:
    return None if raw is None else raw.decode(errors="replace")


def _as_json(stored: StoredDeadLetter) -> dict[str, Any]:
    entry: dict[str, Any] = {"dlq_partition": stored.partition, "dlq_offset": stored.offset}
    letter = stored.letter
    if letter is None:
        return {**entry, "problem": stored.problem}
    return {
        **entry,
        "topic": letter.topic,
        "partition": letter.partition,
        "offset": letter.offset,
        "key": _text(letter.key),
        "value": _text(letter.value),
        # Exact bytes, for values that are not UTF-8.
        "value_base64": None if letter.value is None else base64.b64encode(letter.value).decode(),
        "timestamp_ms": letter.timestamp_ms,
        "group": letter.group,
        "reason": letter.reason.value,
        "error": letter.error,
        "attempts": letter.attempts,
        "dead_lettered_at": letter.dead_lettered_at.isoformat(),
    }


def _preview(raw: bytes | None) -> str:
    text = _text(raw) or ""
    return text if len(text) <= _PREVIEW_CHARS else text[: _PREVIEW_CHARS - 1] + "…"


@click.group(
    help="Dead letters: messages a consumer could not decode, or whose handler kept failing, "
    "written to <topic>.dlq. See docs/operations.md."
)
def dlq() -> None:
    pass


@dlq.command(
    "list",
    help="List the dead letters of TOPIC (oldest first): where each came from, why it was given "
    "up on, and its key and value. --json prints every field, the value also in base64.",
)
@_TOPIC
@click.option(
    "--limit",
    type=click.IntRange(min=1),
    default=100,
    show_default=True,
    help="Most dead letters to show.",
)
@json_option
def dlq_list(topic: str, limit: int, as_json: bool) -> None:
    settings = AdminSettings.from_environ()
    with DeadLetterReader(settings, settings.dead_letter_topic(Topic(topic))) as reader:
        found = reader.read(limit=limit)
    if as_json:
        print_json([_as_json(stored) for stored in found])
        return
    if not found:
        click.echo(f"no dead letters in {settings.dead_letter_topic(Topic(topic))}")
        return
    rows = []
    for stored in found:
        letter = stored.letter
        if letter is None:
            rows.append([f"{stored.partition}:{stored.offset}", "?", "", "", stored.problem])
            continue
        rows.append(
            [
                f"{stored.partition}:{stored.offset}",
                f"{letter.topic}[{letter.partition}]@{letter.offset}",
                letter.reason.value,
                f"{letter.dead_lettered_at:%Y-%m-%d %H:%M:%S}",
                f"{letter.error} | key={_preview(letter.key)} value={_preview(letter.value)}",
            ]
        )
    print_table(["dlq", "from", "reason", "at (UTC)", "error, key and value"], rows)


@dlq.command(
    "replay",
    help="Publish the dead letters of TOPIC back to TOPIC (the original key and value), once "
    "the cause is fixed. Each is replayed once: the consumer group chronoverse-dlq-replay "
    "remembers how far replays got. The dead letters stay in <topic>.dlq.",
)
@_TOPIC
@click.option(
    "--limit", type=click.IntRange(min=1), default=None, help="Most dead letters to replay."
)
@json_option
def dlq_replay(topic: str, limit: int | None, as_json: bool) -> None:
    settings = AdminSettings.from_environ()
    result = replay(settings, settings.topic(Topic(topic)), limit=limit)
    if as_json:
        print_json(
            {
                "replayed": len(result.replayed),
                "skipped": [_as_json(stored) for stored in result.skipped],
            }
        )
        return
    if not result.replayed and not result.skipped:
        click.echo(f"nothing to replay in {settings.dead_letter_topic(Topic(topic))}")
        return
    click.echo(f"replayed {len(result.replayed)} dead letters to {settings.topic(Topic(topic))}")
    for stored in result.skipped:
        click.echo(f"skipped {stored.partition}:{stored.offset}: {stored.problem}")
