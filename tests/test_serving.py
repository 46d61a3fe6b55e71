"""Serving a generated project: workers, the concurrency limit, graceful shutdown, the
alternative servers and their benchmark, and PostgreSQL through a real PgBouncer.

Slow requests are real ones: a POST whose body arrives in two parts is in flight, in the
application, from its headers until the rest of its body is sent.
"""

import http.client
import json
import secrets
import signal
import socket
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from .e2e import Server, port_of, serve, uv_run, wait_for, worker_processes
from .project import Project, features_for, find_python, render, tool
from .servers import PostgresServer, RedisServer, pgbouncer_server
from .test_e2e import sign_up

pytestmark = pytest.mark.e2e

PYTHON = "3.11"


class SlowUpload:
    """``POST path`` with a JSON body of which only the first bytes are sent at first."""

    def __init__(self, server: Server, path: str, body: object) -> None:
        data = json.dumps(body).encode()
        self.socket = socket.create_connection(("127.0.0.1", port_of(server)), timeout=30)
        head = (
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(data)}\r\n\r\n"
        )
        self.socket.sendall(head.encode() + data[:5])
        self.rest = data[5:]

    def finish(self) -> tuple[int, bytes]:
        """Send the rest of the body; the status and body of the answer."""
        self.socket.sendall(self.rest)
        response = http.client.HTTPResponse(self.socket)
        response.begin()
        try:
            return response.status, response.read()
        finally:
            self.socket.close()


def user(n: int) -> dict[str, str]:
    return {"email": f"user{n}@example.org", "name": f"User {n}"}


def server_log(project: Project, server: Server) -> str:
    return (project.path / f".server-{port_of(server)}.log").read_text()


@pytest.fixture(scope="module")
def serving(template_repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Project:
    """The default project (SQLite, in-process cache, metrics), installed with gunicorn too
    (the servers extra)."""
    answers = {"project_name": "Serving", "python_version": PYTHON}
    project = Project(render(template_repo, tmp_path_factory.mktemp("serving"), answers))
    project.run(tool("uv"), "sync", "--extra", "servers", "--python", find_python(PYTHON))
    return project


SERVERS = ("uvicorn", "granian", "gunicorn")
# What each server logs once it has shut down. uvicorn (gunicorn's workers are uvicorn
# servers) says so after the lifespan's shutdown, which closes the pools; granian logs no
# such line of the application's, only that it stopped its worker.
SHUT_DOWN = {
    "uvicorn": "Application shutdown complete",
    "gunicorn": "Application shutdown complete",
    "granian": "Stopped worker-1",
}


def sqlite_env(tmp_path: Path, **settings: str) -> dict[str, str]:
    return {"DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/app.db", **settings}


@pytest.mark.parametrize("server_name", SERVERS)
def test_sigterm_finishes_the_request_in_flight_and_exits_within_the_timeout(
    serving: Project, tmp_path: Path, server_name: str
) -> None:
    timeout = 3
    env = sqlite_env(tmp_path, SERVER=server_name, SHUTDOWN_TIMEOUT_SECONDS=str(timeout))
    with serve(serving, uv_run("serving"), env=env) as server:
        finishing = SlowUpload(server, "/api/users", user(1))
        # Never completed: it holds the server until the timeout.
        stalled = SlowUpload(server, "/api/users", user(2))
        time.sleep(0.5)
        # To `uv run`, as an orchestrator signals the container's command; uv passes it on.
        server.process.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        time.sleep(0.5)
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port_of(server)), timeout=2)
        status, body = finishing.finish()
        assert status == 201, body
        assert json.loads(body)["email"] == "user1@example.org"
        server.process.wait(timeout + 10)
        took = time.monotonic() - signalled
        log = server_log(serving, server)
        stalled.socket.close()
    print(f"\n[shutdown] {server_name} exited {took:.2f} s after SIGTERM (timeout {timeout} s)")
    # It waited for the stalled request up to the timeout, and no longer.
    assert timeout - 0.5 <= took < timeout + 3
    assert SHUT_DOWN[server_name] in log
    # uvicorn re-raises the signal once it has shut down, as a process stopped by SIGTERM
    # should exit; uv reports that as 128 + 15.
    assert server.process.returncode in (0, 128 + signal.SIGTERM)


def get_from(server: Server, source: str, path: str, forwarded_for: str) -> int:
    """``GET path`` from the loopback address ``source`` with an ``X-Forwarded-For``."""
    connection = http.client.HTTPConnection(
        "127.0.0.1", port_of(server), timeout=30, source_address=(source, 0)
    )
    try:
        connection.request("GET", path, headers={"X-Forwarded-For": forwarded_for})
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()


@pytest.mark.parametrize("server_name", SERVERS)
def test_forwarded_for_names_the_client_only_when_a_trusted_peer_sends_it(
    serving: Project, tmp_path: Path, server_name: str
) -> None:
    """127.0.0.1 is the trusted proxy; 127.0.0.2, another peer on the loopback network, is
    not. Every request is logged, and the access log's client field shows whom the app took
    for the client, as the rate limiter keys on the same ``scope["client"]``."""
    env = sqlite_env(
        tmp_path, SERVER=server_name, FORWARDED_ALLOW_IPS="127.0.0.1", ACCESS_LOG_SAMPLE_RATE="1"
    )
    with serve(serving, uv_run("serving"), env=env) as server:
        assert get_from(server, "127.0.0.1", "/api/posts", "203.0.113.7") == 200
        assert get_from(server, "127.0.0.2", "/api/posts", "198.51.100.9") == 200
        # The access log is written once the response has gone out, so the client can read
        # its answer before the line is in the file.
        wait_for(lambda: len(logged_clients(server_log(serving, server))) >= 2, timeout=10)
        log = server_log(serving, server)
    assert logged_clients(log) == ["203.0.113.7", "127.0.0.2"], log[-3000:]


def logged_clients(log: str) -> list[str]:
    """The client field of each access log line for ``/api/posts``, in order."""
    return [
        entry["client"]
        for line in log.splitlines()
        if line.startswith("{") and (entry := json.loads(line))["path"] == "/api/posts"
    ]


def test_requests_past_the_concurrency_limit_get_503_problems_with_retry_after(
    serving: Project, tmp_path: Path
) -> None:
    env = sqlite_env(tmp_path, MAX_CONCURRENT_REQUESTS="2")
    with serve(serving, uv_run("serving"), env=env) as server:
        uploads = [SlowUpload(server, "/api/users", user(n)) for n in range(2)]
        time.sleep(0.5)
        started = time.monotonic()
        refused = [server.get("/api/posts") for _ in range(20)]
        took = time.monotonic() - started
        for answer in refused:
            assert answer.status == 503
            headers = {name.lower(): value for name, value in answer.headers.items()}
            assert headers["retry-after"] == "1"
            assert headers["content-type"] == "application/problem+json"
            problem = answer.json()
            assert isinstance(problem, dict)
            assert problem["status"] == 503
            assert problem["instance"] == "/api/posts"
        # Refused at once, not after a wait.
        assert took < 5
        for path in ("/healthz", "/readyz", "/metrics"):
            assert server.get(path).status == 200, path
        assert [upload.finish()[0] for upload in uploads] == [201, 201]
        assert server.get("/api/posts").status == 200


@pytest.mark.parametrize(
    ("server_name", "workers"), [("granian", 1), ("granian", 2), ("uvicorn", 3), ("gunicorn", 2)]
)
def test_workers_setting_runs_that_many_workers(
    serving: Project, tmp_path: Path, server_name: str, workers: int
) -> None:
    # A fresh database: the command migrates it once, before the workers start.
    env = sqlite_env(tmp_path, SERVER=server_name, WORKERS=str(workers), MIGRATE_ON_START="true")
    with serve(serving, uv_run("serving"), env=env) as server:
        # A server may answer from its first worker while the others still start.
        deadline = time.monotonic() + 20
        while len(found := worker_processes(server)) < workers and time.monotonic() < deadline:
            time.sleep(0.2)
        assert len(found) == workers
        assert all(server.get("/api/posts").status == 200 for _ in range(workers * 4))


def test_granian_speaks_http_1_1_only_like_the_other_servers(
    serving: Project, tmp_path: Path
) -> None:
    """The HTTP/2 connection preface gets no HTTP/2 SETTINGS frame back (granian's default
    would answer one): the connection is closed, and HTTP/1.1 requests are served."""
    with serve(serving, uv_run("serving"), env=sqlite_env(tmp_path, SERVER="granian")) as server:
        with socket.create_connection(("127.0.0.1", port_of(server)), timeout=10) as sock:
            sock.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
            reply = sock.recv(64)
        assert reply[3:4] != b"\x04", f"an HTTP/2 SETTINGS frame: {reply!r}"
        assert server.get("/healthz").status == 200


def test_a_failed_migration_at_start_stops_the_command_before_any_worker(
    serving: Project, tmp_path: Path
) -> None:
    env = {"DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/missing/dir/app.db"}
    result = serving.run(*uv_run("serving"), env={**env, "MIGRATE_ON_START": "true"}, check=False)
    assert result.returncode == 1
    assert "refusing to start: the migrations failed" in result.stderr
    assert "unable to open database file" in result.stderr


def test_server_benchmark_prints_every_server_without_errors(serving: Project) -> None:
    """bench/compare_servers.py at a tiny scale: each server serves the app, wrk's table has
    a row per server and connection count, and none has an error."""
    result = serving.uv(
        "python", "bench/compare_servers.py", "--duration", "1", "--connections", "4,16",
        "--users", "5", "--posts", "40", timeout=300,
    )  # fmt: skip
    rows = [line.split("|")[1:-1] for line in result.stdout.splitlines() if line.startswith("| ")]
    assert [cell.strip() for cell in rows[0]] == ["server", "connections", "req/s", "p99", "errors"]
    cells = [[cell.strip() for cell in row] for row in rows[1:]]
    assert [(server, count) for server, count, *_ in cells] == [
        (server, count) for server in ("uvicorn", "granian", "gunicorn") for count in ("4", "16")
    ]
    for server, count, rate, _p99, errors in cells:
        assert float(rate.replace(",", "")) > 0, (server, count)
        assert errors == "0", (server, count)


@pytest.fixture(scope="module")
def bouncer(template_repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Project:
    """A PostgreSQL project with every feature, installed."""
    answers = {
        "project_name": "Bouncer",
        "python_version": PYTHON,
        "database": "postgresql",
        "cache": "redis",
        "features": features_for("postgresql"),
    }
    project = Project(render(template_repo, tmp_path_factory.mktemp("bouncer"), answers))
    project.sync(PYTHON)
    return project


class Clients:
    """Threads that read and write through the API at once, recording every status."""

    def __init__(self, server: Server, auth: dict[str, str], author_id: int) -> None:
        self.server = server
        self.auth = auth
        self.author_id = author_id
        self.statuses: Counter[tuple[str, int]] = Counter()
        self.lock = threading.Lock()

    def run(self, client: int, rounds: int, post_id: int) -> None:
        for n in range(rounds):
            answers = [
                ("read", self.server.get(f"/api/posts/{post_id}").status),
                ("list", self.server.get(f"/api/posts?author_id={self.author_id}&limit=5").status),
                ("user", self.server.get(f"/api/users/{self.author_id}").status),
            ]
            if n % 3 == 0:
                body = {"author_id": self.author_id, "title": f"{client}-{n}", "body": "text"}
                created = self.server.request("POST", "/api/posts", body, self.auth)
                answers.append(("write", created.status))
                if created.status == 201:
                    new_id = created.json()["id"]  # type: ignore[index]
                    edit = {"title": f"{client}-{n} edited", "body": "edited"}
                    edited = self.server.request("PUT", f"/api/posts/{new_id}", edit, self.auth)
                    answers.append(("edit", edited.status))
            with self.lock:
                self.statuses.update(answers)


def test_gunicorn_without_the_servers_extra_is_a_clear_error(bouncer: Project) -> None:
    result = bouncer.run(*uv_run("bouncer"), env={"SERVER": "gunicorn"}, check=False)
    assert result.returncode == 1
    assert "SERVER=gunicorn needs gunicorn, uvicorn_worker" in result.stderr
    assert "uv sync --extra servers" in result.stderr


# Many clients running one statement over and over through PgBouncer, with the connection
# arguments the project uses in PgBouncer mode, or with the driver's defaults.
SAME_STATEMENT = """
import asyncio
import sys

from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from bouncer.core.db import postgresql_connect_args
from bouncer.settings import Settings


async def main(url: str, pgbouncer: bool) -> None:
    connect_args = postgresql_connect_args(Settings(database_url=url, db_pgbouncer=pgbouncer))
    # Straight-to-PostgreSQL arguments less the startup parameter PgBouncer refuses.
    connect_args["server_settings"].pop("statement_timeout", None)
    engine = create_async_engine(url, pool_size=20, connect_args=connect_args)

    async def client() -> None:
        for n in range(20):
            async with engine.connect() as conn:
                await conn.execute(text("SELECT count(*) FROM users WHERE id > :n"), {"n": n})

    try:
        await asyncio.gather(*(client() for _ in range(20)))
    finally:
        await engine.dispose()


asyncio.run(main(sys.argv[1], sys.argv[2] == "pgbouncer"))
"""


def test_pgbouncer_mode_is_what_keeps_prepared_statements_working(
    bouncer: Project, postgres: PostgresServer
) -> None:
    """The control for the test below: through the same PgBouncer, the driver's defaults
    (prepared statements cached per connection) fail, the project's PgBouncer mode does not."""
    direct = postgres.create_database("bouncer_statements")
    bouncer.uv("alembic", "upgrade", "head", env={"DATABASE_URL": direct})
    script = bouncer.path / "same_statement.py"
    script.write_text(SAME_STATEMENT)
    with pgbouncer_server(postgres, pool_size=4) as pgbouncer:
        url = pgbouncer.url("bouncer_statements")
        defaults = bouncer.uv("python", str(script), url, "defaults", check=False)
        assert defaults.returncode != 0
        assert "prepared statement" in defaults.stderr, defaults.stderr[-3000:]
        bouncer.uv("python", str(script), url, "pgbouncer")


def test_postgresql_through_pgbouncer_transaction_pooling(
    bouncer: Project, postgres: PostgresServer, redis: RedisServer
) -> None:
    """Two workers behind a PgBouncer with four server connections, cache off so every read
    runs its statement: the same statements, many times, over many client connections, each
    transaction on whichever server connection is free. No answer may fail. Then the
    project's own test suite, through the same PgBouncer."""
    app_url = postgres.create_database("bouncer_app")
    tests_url = postgres.create_database("bouncer_tests")
    # Migrations go straight to PostgreSQL (CREATE INDEX CONCURRENTLY needs a session).
    bouncer.uv("alembic", "upgrade", "head", env={"DATABASE_URL": app_url})
    bouncer.uv("alembic", "upgrade", "head", env={"DATABASE_URL": tests_url})
    with pgbouncer_server(postgres, pool_size=4, max_client_conn=500) as pgbouncer:
        env = {
            "DATABASE_URL": pgbouncer.url("bouncer_app"),
            "REDIS_URL": redis.url(6),
            "DB_PGBOUNCER": "true",
            "DB_PGBOUNCER_MAX_CLIENT_CONN": "500",
            "DB_POOL_SIZE": "10",
            "DB_MAX_OVERFLOW": "10",
            "WORKERS": "2",
            "CACHE_ENABLED": "false",
            "RATE_LIMITS": "{}",
            # One key for both workers: development would give each its own, and a token
            # signed by one would not verify in the other.
            "SECRET_KEY": secrets.token_urlsafe(32),
        }
        # Without the mode PgBouncer refuses the connection outright, at start-up.
        plain = {**env, "DB_PGBOUNCER": "false", "PORT": "1"}
        refused = bouncer.run(*uv_run("bouncer"), env=plain, check=False, timeout=120)
        assert refused.returncode != 0
        assert "unsupported startup parameter" in refused.stdout + refused.stderr

        with serve(bouncer, uv_run("bouncer"), env=env) as server:
            assert server.get("/readyz").status == 200
            author_id, auth = sign_up(server)
            first = {"author_id": author_id, "title": "Hot", "body": "read by everyone"}
            post = server.request("POST", "/api/posts", first, auth)
            assert post.status == 201, post.body
            clients = Clients(server, auth, author_id)
            post_id = post.json()["id"]  # type: ignore[index]
            threads = [
                threading.Thread(target=clients.run, args=(i, 15, post_id)) for i in range(16)
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(120)
            log = server_log(bouncer, server)
        print(f"\n[pgbouncer] answers: {dict(clients.statuses)}")
        assert sum(clients.statuses.values()) > 16 * 15 * 3
        failed = {key: n for key, n in clients.statuses.items() if key[1] not in (200, 201)}
        assert not failed, (failed, log[-4000:])
        assert "prepared statement" not in log

        suite_env = {
            "TEST_DATABASE_URL": pgbouncer.url("bouncer_tests"),
            "TEST_REDIS_URL": redis.url(7),
            "DB_PGBOUNCER": "true",
            "DB_PGBOUNCER_MAX_CLIENT_CONN": "500",
        }
        bouncer.uv("pytest", "-q", "-p", "no:cacheprovider", env=suite_env)
