"""Logging setup: JSON lines when not on a TTY, readable text on one."""

from __future__ import annotations

import logging
import sys
from typing import Literal

from pythonjsonlogger.json import JsonFormatter

TEXT_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
JSON_FIELDS = "%(levelname)s %(name)s %(message)s"


def configure_logging(
    level: str = "INFO", fmt: Literal["auto", "json", "text"] = "auto", *, service: str
) -> None:
    """Send every record to stderr, once, in the chosen format."""
    use_json = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    handler = logging.StreamHandler(sys.stderr)
    if use_json:
        handler.setFormatter(
            JsonFormatter(
                JSON_FIELDS,
                rename_fields={"levelname": "level", "name": "logger"},
                static_fields={"service": service},
                timestamp="time",  # ISO 8601, UTC
            )
        )
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # librdkafka and docker's urllib3 are chatty at DEBUG; their warnings still come through.
    for noisy in ("urllib3", "docker", "kafka"):
        logging.getLogger(noisy).setLevel(max(logging.INFO, root.level))
