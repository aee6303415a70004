import pydantic
import pytest

from chronoverse.errors import ConfigurationError
from chronoverse.secrets import generate_key
from chronoverse.settings import KafkaSettings
from services.execution_worker.settings import Settings as ExecutionSettings
from services.server.settings import Settings as ServerSettings

KEY = {"CHRONOVERSE_SECRET_KEYS": generate_key()}


def test_reads_prefixed_variables_only() -> None:
    settings = KafkaSettings.from_environ(
        {"CHRONOVERSE_KAFKA_BOOTSTRAP_SERVERS": "broker:9093", "KAFKA_BOOTSTRAP_SERVERS": "nope"}
    )
    assert settings.kafka_bootstrap_servers == "broker:9093"


def test_defaults_apply_when_unset() -> None:
    settings = ServerSettings.from_environ(KEY)
    assert (settings.http_port, settings.grpc_port) == (8080, 50051)


def test_each_worker_has_its_own_default_health_port() -> None:
    assert ExecutionSettings.from_environ(KEY).health_port == 9103


def test_an_invalid_value_names_the_variable() -> None:
    with pytest.raises(ConfigurationError) as info:
        ServerSettings.from_environ({**KEY, "CHRONOVERSE_HTTP_PORT": "eighty"})
    assert info.value.setting == "CHRONOVERSE_HTTP_PORT"


def test_an_out_of_range_value_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="CHRONOVERSE_KAFKA_SESSION_TIMEOUT_MS"):
        KafkaSettings.from_environ({"CHRONOVERSE_KAFKA_SESSION_TIMEOUT_MS": "5"})


def test_the_server_needs_a_secret_key_and_says_how_to_make_one() -> None:
    with pytest.raises(ConfigurationError) as info:
        ServerSettings.from_environ({})
    assert info.value.setting == "CHRONOVERSE_SECRET_KEYS"
    assert "chronoverse secrets generate-key" in info.value.message
    with pytest.raises(ConfigurationError, match="not a Fernet key"):
        ServerSettings.from_environ({"CHRONOVERSE_SECRET_KEYS": "hunter2"})


def test_settings_are_frozen() -> None:
    settings = ServerSettings.from_environ(KEY)
    with pytest.raises(pydantic.ValidationError):
        settings.http_port = 1  # type: ignore[misc]


@pytest.mark.parametrize("days", ["0", "36501"])
def test_a_token_lifetime_out_of_range_is_refused(days: str) -> None:
    # Above the bound, issuing a token overflowed the datetime; at 0, it expired at once.
    with pytest.raises(ConfigurationError) as info:
        ServerSettings.from_environ(
            {"CHRONOVERSE_SECRET_KEYS": generate_key(), "CHRONOVERSE_TOKEN_TTL_DAYS": days}
        )
    assert info.value.setting == "CHRONOVERSE_TOKEN_TTL_DAYS"
