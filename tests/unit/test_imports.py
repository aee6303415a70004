"""What each service imports at rest: resident memory is mostly imports (docs/benchmarks.md).

Each entry module is imported in a fresh interpreter, as its console script does, without
starting the service. A heavy package a service never uses, or uses only on a rarer path that
imports it on demand, must not be among the modules it loads.
"""

import json
import subprocess
import sys

import pytest

# cryptography's Rust bindings (Fernet) load with the first secret sealed or opened.
FERNET = "cryptography.hazmat.bindings._rust"
HTTP_EDGE = ("fastapi", "starlette", "uvicorn", "sse_starlette", "jinja2", "argon2", "limits")
GRPC = ("grpc", "google.protobuf")
DOCKER = ("docker", "requests")
# Loaded by redis-py 8 at import and not by 7 (about 1.7 MiB more per process): pinned below 8.
REDIS_8 = "redis.keyspace_notifications"

NOT_AT_REST = {
    # The web pages' Jinja2 environment is made at the first page rendered, argon2 at the first
    # password hashed or checked.
    "services.server.__main__": (*DOCKER, "httpx", "jinja2", "argon2", FERNET, REDIS_8),
    "services.scheduling_worker.__main__": (*HTTP_EDGE, *GRPC, *DOCKER, "httpx", FERNET, REDIS_8),
    "services.workflow_worker.__main__": (*HTTP_EDGE, *GRPC, "httpx", FERNET, REDIS_8),
    # httpcore (the HEARTBEAT client's transport) comes with the first HEARTBEAT request.
    "services.execution_worker.__main__": (*HTTP_EDGE, *GRPC, "httpcore", FERNET, REDIS_8),
    "services.log_processor.__main__": (*HTTP_EDGE, *GRPC, *DOCKER, "httpx", FERNET, REDIS_8),
}


def loaded_by(module: str) -> set[str]:
    probe = f"import json, sys\nfrom {module} import main\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", probe], check=True, capture_output=True, text=True
    ).stdout
    return set(json.loads(out))


@pytest.mark.parametrize("module", sorted(NOT_AT_REST))
def test_a_service_imports_only_what_it_uses_at_rest(module: str) -> None:
    loaded = loaded_by(module)
    assert f"{module.rsplit('.', 1)[0]}.settings" in loaded  # the probe imported the service
    assert sorted(name for name in NOT_AT_REST[module] if name in loaded) == []


def test_sealing_a_secret_loads_fernet_on_demand() -> None:
    probe = (
        "import sys\n"
        "from chronoverse.secrets import SecretBox, generate_key\n"
        f"assert {FERNET!r} not in sys.modules\n"
        "box = SecretBox([generate_key()])\n"
        "assert box.open(box.seal('token')) == 'token'\n"
    )
    subprocess.run([sys.executable, "-c", probe], check=True)


def test_the_heartbeat_client_makes_its_transport_at_the_first_request() -> None:
    probe = (
        "import sys\n"
        "from services.execution_worker.heartbeat import http_client\n"
        "client = http_client(max_connections=4)\n"
        "assert 'httpcore' not in sys.modules\n"
        "client.close()\n"
    )
    subprocess.run([sys.executable, "-c", probe], check=True)


def test_hashing_a_password_loads_argon2_on_demand() -> None:
    probe = (
        "import sys\n"
        "from chronoverse.accounts import _argon2\n"
        "from chronoverse.errors import AuthenticationError\n"
        "assert 'argon2' not in sys.modules\n"
        "stored = _argon2.hash('correct horse')\n"
        "_argon2.verify(stored, 'correct horse')\n"
        "for wrong in ((stored, 'wrong horse'), (None, 'correct horse')):\n"
        "    try:\n"
        "        _argon2.verify(*wrong)\n"
        "    except AuthenticationError:\n"
        "        pass\n"
        "    else:\n"
        "        raise AssertionError(wrong)\n"
    )
    subprocess.run([sys.executable, "-c", probe], check=True)
