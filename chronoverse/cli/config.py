"""Where the CLI finds the server and the token: flags, then environment, then the config file."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chronoverse.cli.errors import CliError
from chronoverse.client import Client

DEFAULT_SERVER_URL = "http://127.0.0.1:8080"


def default_config_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "chronoverse" / "config.json"


@dataclass(frozen=True, kw_only=True)
class ClientConfig:
    """The CLI's view of where and who: resolved once per invocation."""

    path: Path
    server_url: str | None
    token: str | None

    def stored(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise CliError("config_unreadable", f"cannot read {self.path}: {exc}") from exc
        return data if isinstance(data, dict) else {}

    @property
    def resolved_server_url(self) -> str:
        return self.server_url or self.stored().get("server_url") or DEFAULT_SERVER_URL

    @property
    def resolved_token(self) -> str | None:
        return self.token or self.stored().get("token")

    def save(self, values: Mapping[str, Any]) -> None:
        """Write exactly ``values`` (a key left out is removed from the file)."""
        data = {k: v for k, v in values.items() if v is not None}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # The token is a credential: readable by its owner only.
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(data, handle, indent=2)

    def client(self, *, authenticated: bool = True) -> Client:
        token = self.resolved_token
        if authenticated and not token:
            raise CliError(
                "not_logged_in",
                "not logged in: run `chronoverse login`, or pass --token / set CHRONOVERSE_TOKEN",
            )
        return Client(self.resolved_server_url, token=token if authenticated else None)
