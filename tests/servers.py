"""Real PostgreSQL, PgBouncer and Redis servers for the test suite: loopback, free ports, temp dirs.

Each server is a child process of the test run and is stopped (and its data deleted) when
the fixture that started it ends.
"""

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


def postgres_bin() -> Path:
    candidates = [Path(p).resolve().parent for p in [shutil.which("pg_ctl") or ""] if p]
    candidates += sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)
    for directory in candidates:
        if (directory / "initdb").exists() and (directory / "postgres").exists():
            return directory
    raise FileNotFoundError("PostgreSQL server binaries (initdb, postgres) not found")


@dataclass
class RedisServer:
    port: int
    process: subprocess.Popen[bytes]
    command: list[str]

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def kill(self) -> None:
        """SIGKILL, as a crash or the OOM killer would end it: no shutdown of any kind."""
        self.process.kill()
        self.process.wait(10)

    def start(self) -> None:
        """Start it again on the same port, empty (it persists nothing)."""
        self.process = _start_redis(self.command)
        wait_for_port(self.port)


def _start_redis(command: list[str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


@contextlib.contextmanager
def redis_server() -> Iterator[RedisServer]:
    binary = shutil.which("redis-server")
    if binary is None:
        raise FileNotFoundError("redis-server not found (apt-get install redis-server)")
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="fe-redis-") as workdir:
        command = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
        command += ["--appendonly", "no", "--dir", workdir]
        server = RedisServer(port, _start_redis(command), command)
        try:
            wait_for_port(port)
            yield server
        finally:
            server.process.terminate()
            server.process.wait(10)


@dataclass
class PostgresServer:
    port: int
    socket_dir: Path
    bindir: Path
    user: str = "postgres"
    data: Path | None = None
    log: Path | None = None

    def start(self) -> None:
        options = (
            f"-p {self.port} -k {self.socket_dir} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off -c max_connections=300"
        )
        pg_ctl = [str(self.bindir / "pg_ctl"), "-D", str(self.data), "-o", options]
        subprocess.run(
            _as_postgres_user([*pg_ctl, "-l", str(self.log), "-w", "start"]),
            check=True,
            capture_output=True,
        )

    def stop(self, mode: str = "fast") -> None:
        pg_ctl = [str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop"]
        subprocess.run(_as_postgres_user(pg_ctl), capture_output=True)

    def url(self, database: str, driver: str = "postgresql+asyncpg") -> str:
        return f"{driver}://{self.user}@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        """Create a fresh database and return its SQLAlchemy URL."""
        subprocess.run(
            [
                str(self.bindir / "createdb"),
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-U",
                self.user,
                name,
            ],
            check=True,
            capture_output=True,
        )
        return self.url(name)


def _as_postgres_user(cmd: list[str]) -> list[str]:
    # initdb and postgres refuse to run as root.
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *cmd]
    return cmd


@contextlib.contextmanager
def postgres_server() -> Iterator[PostgresServer]:
    bindir = postgres_bin()
    port = free_port()
    root = Path(tempfile.mkdtemp(prefix="fe-pg-"))
    data, sockets = root / "data", root / "sock"
    data.mkdir()
    sockets.mkdir()
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
        shutil.chown(data, "postgres")
        shutil.chown(sockets, "postgres")
    user = "postgres" if os.geteuid() == 0 else os.environ.get("USER", "postgres")
    subprocess.run(
        _as_postgres_user(
            [
                str(bindir / "initdb"),
                "-D",
                str(data),
                "-U",
                user,
                "--auth=trust",
                "--no-sync",
                "-E",
                "UTF8",
            ]
        ),
        check=True,
        capture_output=True,
    )
    server = PostgresServer(port, sockets, bindir, user, data, root / "log")
    server.start()
    try:
        yield server
    finally:
        server.stop("immediate")
        shutil.rmtree(root, ignore_errors=True)


@dataclass
class PgBouncerServer:
    """PgBouncer in transaction pooling mode in front of a `PostgresServer`."""

    port: int
    postgres: PostgresServer
    pool_size: int
    max_client_conn: int

    def url(self, database: str) -> str:
        return f"postgresql+asyncpg://{self.postgres.user}@127.0.0.1:{self.port}/{database}"


def pgbouncer_config(
    port: int, postgres: PostgresServer, workdir: Path, pool_size: int, max_client_conn: int
) -> str:
    """Transaction pooling, as the generated README configures it: server connections are
    reset after every transaction, so no prepared statement outlives the one it was made in."""
    return f"""\
[databases]
* = host=127.0.0.1 port={postgres.port}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir =
auth_type = trust
auth_file = {workdir / "userlist.txt"}
pidfile = {workdir / "pgbouncer.pid"}
logfile = {workdir / "pgbouncer.log"}
pool_mode = transaction
default_pool_size = {pool_size}
max_client_conn = {max_client_conn}
server_reset_query = DISCARD ALL
server_reset_query_always = 1
"""


@contextlib.contextmanager
def pgbouncer_server(
    postgres: PostgresServer, pool_size: int = 10, max_client_conn: int = 500
) -> Iterator[PgBouncerServer]:
    binary = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
    if not Path(binary).exists():
        raise FileNotFoundError("pgbouncer not found (apt-get install pgbouncer)")
    port = free_port()
    workdir = Path(tempfile.mkdtemp(prefix="fe-pgbouncer-"))
    (workdir / "userlist.txt").write_text(f'"{postgres.user}" ""\n')
    config = workdir / "pgbouncer.ini"
    config.write_text(pgbouncer_config(port, postgres, workdir, pool_size, max_client_conn))
    if os.geteuid() == 0:  # PgBouncer refuses to run as root, like PostgreSQL
        shutil.chown(workdir, "postgres")
    process = subprocess.Popen(
        _as_postgres_user([binary, str(config)]),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port)
        yield PgBouncerServer(port, postgres, pool_size, max_client_conn)
    finally:
        process.terminate()
        process.wait(10)
        shutil.rmtree(workdir, ignore_errors=True)
