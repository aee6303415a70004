"""`chronoverse logs JOB_ID [--follow] [--attempt N] [--grep TEXT] [--stream S] [--download F]`:
a job's output, one attempt at a time; searched, filtered or saved as a file.

Exit status 0 when the log is whole, 3 when lines of the job's final attempt are known to be
missing (lost in shipping, or the end of the log never arrived): everything stored is printed
first, then the reason on stderr. 1 and 2 are failures and usage errors, as for every command.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from chronoverse.cli.config import ClientConfig
from chronoverse.cli.errors import CliError

INCOMPLETE_EXIT = 3


class LogIncompleteError(CliError):
    """The log was printed, but lines of it are known to be missing."""

    exit_code = INCOMPLETE_EXIT

    def __init__(self, job_id: str, attempt: int) -> None:
        super().__init__(
            "logs_incomplete",
            f"the log of job {job_id} (attempt {attempt}) is incomplete: lines were lost or "
            "its end never arrived",
            extra={"job_id": job_id, "attempt": attempt},
        )


def _show(line: dict[str, object], with_stream: bool) -> None:
    text = str(line["line"])
    if with_stream:
        text = f"{line['stream']:<6} {text}"
    click.echo(text, err=line["stream"] == "stderr" and not with_stream)


def _note(text: str) -> None:
    click.echo(f"chronoverse: {text}", err=True)


@click.command(
    help="Print a job's output: its latest attempt, or the one --attempt names. With --follow, "
    "keep printing live lines until the job is over (resuming by itself if the connection "
    "drops); when the job is retried meanwhile, a note on stderr marks where the next "
    "attempt's lines begin. Exit status 3 when lines of the final attempt are known to be "
    "missing (lost, or the end of the log never arrived), after printing what was stored."
)
@click.argument("job_id")
@click.option("--follow", "-f", is_flag=True, help="Stream live lines until the job ends.")
@click.option(
    "--attempt",
    type=click.IntRange(min=1),
    default=None,
    help="The attempt to print (from 1) [default: the latest]; with --follow, where to start.",
)
@click.option(
    "--streams",
    is_flag=True,
    help="Prefix each line with its stream; otherwise stderr lines go to stderr.",
)
@click.option(
    "--grep",
    metavar="TEXT",
    help="Only lines containing TEXT, case-insensitive (searched by the server; 1 to 200 "
    "characters).",
)
@click.option(
    "--stream",
    type=click.Choice(["stdout", "stderr"]),
    default=None,
    help="Only this stream's lines.",
)
@click.option(
    "--download",
    type=click.Choice(["txt", "json", "jsonl"]),
    default=None,
    help="Write the attempt's log (with --grep and --stream applied) as a file of this format, "
    "to -o or stdout.",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    default=None,
    help="With --download: the file to write [default: stdout].",
)
@click.pass_obj
def logs(
    config: ClientConfig,
    job_id: str,
    follow: bool,
    attempt: int | None,
    streams: bool,
    grep: str | None,
    stream: str | None,
    download: str | None,
    output: Path | None,
) -> None:
    if output is not None and download is None:
        raise click.UsageError("-o/--output goes with --download")
    if download is not None and follow:
        raise click.UsageError("--download saves what is stored: not with --follow")
    with config.client() as client:
        if download is not None:
            chunks = client.download_logs(
                job_id, format=download, attempt=attempt, stream=stream, q=grep
            )
            _save(chunks, output)
            return
        if follow:
            needle = grep.casefold() if grep is not None else None
            for event in client.follow_logs(job_id, attempt=attempt):
                if "attempt_start" in event:
                    _note(f"the job was retried: attempt {event['attempt_start']} begins")
                elif "end" in event:
                    _ended(job_id, event["end"])
                elif _wanted(event, stream, needle):
                    _show(event, streams)
            return
        cursor = None
        while True:
            page = client.log_page(job_id, attempt=attempt, cursor=cursor, stream=stream, q=grep)
            if cursor is None and attempt is None and page["attempt"] > 1:
                _note(
                    f"attempt {page['attempt']} (the latest); earlier attempts: --attempt 1 "
                    f"to {page['attempt'] - 1}"
                )
            for line in page["logs"]:
                _show(line, streams)
            cursor = page["next_cursor"]
            if cursor is None:
                if page["incomplete"]:
                    raise LogIncompleteError(job_id, page["attempt"])
                return


def _wanted(line: dict[str, Any], stream: str | None, needle: str | None) -> bool:
    """A live line passes --stream and --grep (matched here, as the server matches stored
    lines)."""
    if stream is not None and line["stream"] != stream:
        return False
    return needle is None or needle in str(line["line"]).casefold()


def _save(chunks: Any, output: Path | None) -> None:
    if output is None:
        for chunk in chunks:
            sys.stdout.buffer.write(chunk)
        sys.stdout.buffer.flush()
        return
    with output.open("wb") as file:
        for chunk in chunks:
            file.write(chunk)
    _note(f"saved to {output}")


def _ended(job_id: str, end: dict[str, Any]) -> None:
    if end["incomplete"]:
        raise LogIncompleteError(job_id, int(end["attempt"]))
