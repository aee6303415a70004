"""Administrative commands that talk to Postgres and Kafka directly (migrate, topics, users,
secrets), and the container healthcheck probe."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from datetime import timedelta

import click
from pydantic import Field

from chronoverse.cli.errors import CliError
from chronoverse.cli.output import json_option, print_json
from chronoverse.kafka.admin import ensure_topics, list_topics
from chronoverse.migrate import migrate
from chronoverse.postgres import create_pool, ping
from chronoverse.secret_store import seal_stored
from chronoverse.secrets import SecretBox
from chronoverse.settings import ENV_PREFIX, KafkaSettings, PostgresSettings, SecretSettings


class AdminSettings(PostgresSettings, KafkaSettings):
    """What the administrative commands read from the environment."""

    token_ttl_days: int = Field(
        30,
        ge=1,
        le=36500,
        description="Lifetime in days (1 to 36500) of the token that "
        "`chronoverse users create` prints.",
    )
    secret_keys: str = Field(
        "",
        description="Required by `chronoverse secrets rotate`, and by `chronoverse migrate` when "
        "workflows store env or headers values that are not encrypted yet; the same keys as the "
        "services' (see the server's CHRONOVERSE_SECRET_KEYS).",
    )

    def secret_box(self) -> SecretBox:
        """The keys, or a ConfigurationError that says how to make one."""
        keys = SecretSettings.from_environ({f"{ENV_PREFIX}SECRET_KEYS": self.secret_keys})
        return SecretBox.from_settings(keys)

    def optional_secret_box(self) -> SecretBox | None:
        return self.secret_box() if self.secret_keys.strip() else None


def _settings() -> AdminSettings:
    # An invalid setting raises ConfigurationError, which the CLI reports in one line naming it.
    return AdminSettings.from_environ()


@click.command(
    "migrate",
    help="Apply pending SQL migrations to CHRONOVERSE_DATABASE_URL, then encrypt the secret "
    "values (CONTAINER env, HEARTBEAT headers) stored before encryption and mask them in saved "
    "idempotency responses. Running it again changes nothing. Encrypting needs "
    "CHRONOVERSE_SECRET_KEYS; with nothing to encrypt, no key is needed.",
)
def migrate_command() -> None:
    settings = _settings()
    box = settings.optional_secret_box()
    applied = migrate(settings.database_url)
    for migration in applied:
        click.echo(f"applied {migration.version:04d}_{migration.name}")
    sealed = seal_stored(settings.database_url, box)
    if sealed.workflows:
        click.echo(f"encrypted the secret values of {sealed.workflows} workflows")
    if sealed.responses:
        click.echo(f"masked secret values in {sealed.responses} saved responses")
    if not (applied or sealed.workflows or sealed.responses):
        click.echo("database is up to date")


@click.group(help="Kafka topics (CHRONOVERSE_KAFKA_BOOTSTRAP_SERVERS).")
def topics() -> None:
    pass


@topics.command(
    "create",
    help="Create the topics Chronoverse uses (workflows, jobs, job_logs) and their dead-letter "
    "topics (<topic>.dlq), with CHRONOVERSE_KAFKA_TOPIC_PREFIX. Existing ones are left alone.",
)
@click.option(
    "--partitions",
    type=click.IntRange(min=1),
    default=None,
    help="Partitions per topic [default: CHRONOVERSE_KAFKA_TOPIC_PARTITIONS].",
)
def topics_create(partitions: int | None) -> None:
    settings = _settings()
    created = ensure_topics(settings, settings.all_topics(), partitions=partitions)
    click.echo(f"created: {', '.join(created)}" if created else "topics already exist")


@topics.command("list", help="List the broker's topics (--json: a JSON array of names).")
@json_option
def topics_list(as_json: bool) -> None:
    names = sorted(list_topics(_settings()))
    click.echo(json.dumps(names) if as_json else "\n".join(names))


@click.group(help="Manage users directly in the database (for self-hosters).")
def users() -> None:
    pass


@users.command(
    "create",
    help="Create a user and print a bearer token for it (shown once). Reads "
    "CHRONOVERSE_DATABASE_URL; the token lives CHRONOVERSE_TOKEN_TTL_DAYS days. With --json, "
    "print {id, email, token, expires_at}.",
)
@click.option("--email", required=True, help="The user's email address.")
@click.option(
    "--password",
    help="The password, 8 to 1024 characters [default: prompted for, on stderr].",
)
@json_option
def users_create(email: str, password: str | None, as_json: bool) -> None:
    # Imported here: importing it hashes a dummy password, a cost no other command should pay.
    from chronoverse.accounts import Accounts

    settings = _settings()
    # Fails fast with libpq's reason (the pool alone would retry for 30 seconds), and before
    # asking for a password that could not be used.
    ping(settings.database_url, timeout_s=10)
    if password is None:
        # On stderr, so that stdout holds only the result (JSON with --json).
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True, err=True)
    pool = create_pool(
        settings.model_copy(update={"database_pool_min_size": 0, "database_pool_max_size": 1}),
        name="cli",
    )
    try:
        accounts = Accounts(pool, token_ttl=timedelta(days=settings.token_ttl_days))
        user = accounts.register(email, password)
        issued = accounts.issue_token(email, token_name="cli users create")
    finally:
        pool.close()
    if as_json:
        print_json(
            {
                "id": str(user.id),
                "email": user.email,
                "token": issued.token,
                "expires_at": issued.expires_at.isoformat(),
            }
        )
        return
    click.echo(f"created user {user.email} ({user.id})")
    click.echo(f"token (shown once, expires {issued.expires_at:%Y-%m-%d}): {issued.token}")


@click.command(
    "healthcheck",
    help="Exit 0 when a service's readiness endpoint answers 200, else print why and exit 1. "
    "For container healthchecks: `chronoverse healthcheck --port 9103`.",
)
@click.option(
    "--port",
    type=click.IntRange(1, 65535),
    required=True,
    help="Health port: the server's HTTP port (8080) or a worker's CHRONOVERSE_HEALTH_PORT "
    "(9101 scheduling, 9102 workflow, 9103 execution, 9104 log processor).",
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Host to probe.")
@click.option("--path", default="/readyz", show_default=True, help="Endpoint to probe.")
@click.option(
    "--timeout",
    type=click.FloatRange(min=0.1),
    default=3.0,
    show_default=True,
    help="Seconds to wait for the answer.",
)
def healthcheck_command(port: int, host: str, path: str, timeout: float) -> None:
    url = f"http://{host}:{port}{path}"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            status, body = response.status, response.read()
    except urllib.error.HTTPError as exc:
        status, body = exc.code, exc.read()
    except (urllib.error.URLError, OSError) as exc:
        reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
        raise CliError("unreachable", f"{url}: {reason}") from exc
    if status != 200:
        raise CliError("unhealthy", f"{url} answered {status}: {body.decode(errors='replace')}")
    click.echo(f"{url}: {status}")
