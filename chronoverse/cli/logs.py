"""`chronoverse logs JOB_ID [--follow]`."""

from __future__ import annotations

import click

from chronoverse.cli.config import ClientConfig


def _show(line: dict[str, object], with_stream: bool) -> None:
    text = str(line["line"])
    if with_stream:
        text = f"{line['stream']:<6} {text}"
    click.echo(text, err=line["stream"] == "stderr" and not with_stream)


@click.command(
    help="Print a job's output. With --follow, keep printing live lines until the "
    "job is over (resuming by itself if the connection drops)."
)
@click.argument("job_id")
@click.option("--follow", "-f", is_flag=True, help="Stream live lines until the job ends.")
@click.option(
    "--streams",
    is_flag=True,
    help="Prefix each line with its stream; otherwise stderr lines go to stderr.",
)
@click.pass_obj
def logs(config: ClientConfig, job_id: str, follow: bool, streams: bool) -> None:
    with config.client() as client:
        if follow:
            for event in client.follow_logs(job_id):
                if "end" not in event:
                    _show(event, streams)
            return
        cursor = None
        while True:
            page = client.log_page(job_id, cursor=cursor)
            for line in page["logs"]:
                _show(line, streams)
            cursor = page["next_cursor"]
            if cursor is None:
                return
