"""End to end: generate, install, lint, run the project's own tests, migrate, boot, call.

Representative combinations only (each costs an install); the render matrix covers the rest.
"""

import json
import re
import shlex
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from fastapi_easy.template import choices

from .e2e import Response, Server, serve, uv_run
from .fuzz import FuzzRun, fuzz
from .project import Project, features_for, render, tool
from .servers import PostgresServer, RedisServer, free_port

pytestmark = pytest.mark.e2e

PYTHON = "3.11"


def quick_start_commands(readme: Path) -> list[str]:
    """The commands of the first shell block under '## Quick start', comments removed."""
    text = readme.read_text(encoding="utf-8")
    section = text.split("## Quick start", 1)[1]
    block = re.search(r"```sh\n(.*?)```", section, re.DOTALL)
    assert block, "no shell block in the quick start"
    return [line.split("#", 1)[0].strip() for line in block.group(1).splitlines() if line.strip()]


def lint(project: Project) -> None:
    project.uv("ruff", "check", ".")
    project.uv("ruff", "format", "--check", ".")


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Project:
    """`fastapi-easy new demo --defaults`, as the README's quick start does it."""
    work = tmp_path_factory.mktemp("quickstart")
    started = time.monotonic()
    result = subprocess.run(
        [tool("fastapi-easy"), "new", "demo", "--defaults"],
        cwd=work,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, result.stderr
    project = Project(work / "demo")
    project.sync(PYTHON)
    print(f"\n[timing] generate + install demo: {time.monotonic() - started:.1f}s")
    return project


def test_quick_start_serves_health_and_its_tests_pass(demo: Project) -> None:
    serve_cmd, test_cmd = quick_start_commands(demo.path / "README.md")
    assert serve_cmd == "uv run demo"
    assert test_cmd == "uv run pytest"
    with serve(demo, shlex.split(serve_cmd)) as server:
        assert server.get("/healthz").status == 200
        ready = server.get("/readyz")
        assert ready.status == 200
        assert ready.json() == {"status": "ok", "checks": {"database": "ok"}}
    started = time.monotonic()
    demo.run(*shlex.split(test_cmd))
    print(f"\n[timing] demo test suite: {time.monotonic() - started:.1f}s")
    lint(demo)


def test_factory_serves_with_plain_uvicorn(demo: Project) -> None:
    command = uv_run("uvicorn", "demo.main:create_app", "--factory", "--port", "{port}")
    with serve(demo, command) as server:
        assert server.get("/readyz").status == 200


@pytest.fixture(scope="module")
def full_stack(
    template_repo: Path, tmp_path_factory: pytest.TempPathFactory, postgres: PostgresServer
) -> tuple[Project, str]:
    answers = {
        "project_name": "Full Stack",
        "python_version": PYTHON,
        "database": "postgresql",
        "cache": "redis",
        "features": choices("features"),
    }
    project = Project(render(template_repo, tmp_path_factory.mktemp("full"), answers))
    project.sync(PYTHON)
    return project, postgres.create_database("full_stack")


def test_postgresql_redis_all_features(
    full_stack: tuple[Project, str], redis: RedisServer, postgres: PostgresServer
) -> None:
    project, database_url = full_stack
    lint(project)
    env = {"TEST_DATABASE_URL": database_url, "TEST_REDIS_URL": redis.url(1)}
    project.uv("pytest", "-q", "-p", "no:cacheprovider", env=env)

    app_db = postgres.create_database("full_stack_app")
    run_env = {"DATABASE_URL": app_db, "REDIS_URL": redis.url(2)}
    project.uv("alembic", "upgrade", "head", env=run_env)
    project.uv("alembic", "check", env=run_env)
    project.uv(
        "full-stack-seed", "--users", "50", "--posts", "500", "--comments", "1000", env=run_env
    )
    with serve(project, uv_run("full-stack"), env=run_env) as server:
        ready = server.get("/readyz")
        assert ready.status == 200, ready.body
        assert ready.json()["checks"] == {"database": "ok", "redis": "ok"}
        exercise_api(server)
        metrics = server.get("/metrics").body.decode()
        assert 'http_requests_total{method="POST",route="/api/posts"' in metrics


def log_in(server: Server, email: str, password: str) -> dict[str, str]:
    """The OAuth2 password flow (a form post), as a client library would do it."""
    form = urllib.parse.urlencode({"username": email, "password": password}).encode()
    request = urllib.request.Request(server.base_url + "/api/auth/token", data=form)
    with urllib.request.urlopen(request, timeout=30) as response:
        token = json.loads(response.read())
    assert token["token_type"] == "bearer"
    return {"Authorization": f"Bearer {token['access_token']}"}


def sign_up(server: Server) -> tuple[int, dict[str, str]]:
    """Register and log in on a project with auth: the user's id and their auth header."""
    body = {"email": "ada@example.org", "name": "Ada", "password": "correct horse battery"}
    user = server.request("POST", "/api/auth/register", body)
    assert user.status == 201, user.body
    assert "password" not in user.json()
    headers = log_in(server, body["email"], body["password"])
    assert server.get("/api/auth/me", headers).json() == user.json()
    # Writes without a token are refused, reads are public.
    anonymous = server.request("POST", "/api/users", {"email": "x@example.org", "name": "X"})
    assert anonymous.status == 401
    assert anonymous.headers["www-authenticate"] == "Bearer"
    assert anonymous.headers["content-type"].startswith("application/problem+json")
    return user.json()["id"], headers


def exercise_api(server: Server) -> None:
    """A user's first minutes with the API, over real HTTP; logged in when it has auth."""
    if "/api/auth/token" in server.get("/openapi.json").json()["paths"]:
        user_id, auth = sign_up(server)
    else:
        auth = {}
        user = server.request("POST", "/api/users", {"email": "ada@example.org", "name": "Ada"})
        assert user.status == 201, user.body
        user_id = user.json()["id"]

    def write(method: str, path: str, body: object = None) -> Response:
        return server.request(method, path, body, auth)

    duplicate = write("POST", "/api/users", {"email": "ada@example.org", "name": "A"})
    assert duplicate.status == 409
    assert duplicate.headers["content-type"].startswith("application/problem+json")
    post = write(
        "POST",
        "/api/posts",
        {"author_id": user_id, "title": "Hello", "body": "First post", "published": True},
    )
    assert post.status == 201, post.body
    post_id = post.json()["id"]
    assert server.get(f"/api/posts/{post_id}").json()["title"] == "Hello"
    page = server.get(f"/api/posts?author_id={user_id}&limit=5")
    assert page.status == 200
    assert [p["id"] for p in page.json()["items"]] == [post_id]
    updated = write("PUT", f"/api/posts/{post_id}", {"title": "Hello again", "body": "Edited"})
    assert updated.status == 200, updated.body
    assert server.get(f"/api/posts/{post_id}").json()["title"] == "Hello again"
    assert write("DELETE", f"/api/posts/{post_id}").status == 204
    missing = server.get(f"/api/posts/{post_id}")
    assert missing.status == 404
    assert missing.json()["status"] == 404
    invalid = write("POST", "/api/users", {"email": "nope", "name": ""})
    assert invalid.status == 422


@pytest.mark.parametrize(
    ("database", "cache_backend"), [("sqlite", "redis"), ("postgresql", "memory")]
)
def test_cross_combinations(
    template_repo: Path,
    tmp_path: Path,
    postgres: PostgresServer,
    redis: RedisServer,
    database: str,
    cache_backend: str,
) -> None:
    answers = {
        "project_name": "Mixed",
        "python_version": PYTHON,
        "database": database,
        "cache": cache_backend,
        "features": features_for(database),
    }
    project = Project(render(template_repo, tmp_path / "p", answers))
    project.sync(PYTHON)
    lint(project)
    env = {"TEST_REDIS_URL": redis.url(4)}
    if database == "postgresql":
        env["TEST_DATABASE_URL"] = postgres.create_database("mixed_tests")
    project.uv("pytest", "-q", "-p", "no:cacheprovider", env=env)
    run_env = {
        "REDIS_URL": redis.url(5),
        "DATABASE_URL": (
            postgres.create_database("mixed_app")
            if database == "postgresql"
            else f"sqlite+aiosqlite:///{tmp_path}/app.db"
        ),
    }
    project.uv("alembic", "upgrade", "head", env=run_env)
    project.uv("alembic", "check", env=run_env)
    with serve(project, uv_run("mixed"), env=run_env) as server:
        assert server.get("/readyz").status == 200
        exercise_api(server)


def assert_fuzzed_cleanly(name: str, run: FuzzRun) -> None:
    print(f"\n[fuzz] {name}: {run.summary()}")
    operations = run.report["operations"]
    assert operations["tested"] == operations["total"] > 0, run.output
    assert operations["errored"] == 0, run.output
    assert run.cases > operations["total"], run.output
    assert not run.failures, run.output


def test_fuzzing_every_operation_of_the_default_project(demo: Project, tmp_path: Path) -> None:
    """No 5xx, and every answer as the OpenAPI schema documents it (status, type, body)."""
    with serve(demo, uv_run("demo")) as server:
        assert_fuzzed_cleanly("default", fuzz(server, tmp_path))


def test_fuzzing_every_operation_of_postgresql_redis_all_features(
    full_stack: tuple[Project, str], postgres: PostgresServer, redis: RedisServer, tmp_path: Path
) -> None:
    """The same with a bearer token on every request (writes need one), on PostgreSQL, which
    refuses more than SQLite (text with U+0000, ids past 64 bits)."""
    project, _ = full_stack
    env = {
        "DATABASE_URL": postgres.create_database("full_stack_fuzz"),
        "REDIS_URL": redis.url(6),
        # The fuzzer's requests come from one address: the limit is not what is tested.
        "RATE_LIMITS": '{"/api": "100000/second"}',
        # The fuzzer registers a user whenever its token stops working; cheap hashes.
        "AUTH_ARGON2_TIME_COST": "1",
        "AUTH_ARGON2_MEMORY_COST": "1024",
    }
    project.uv("alembic", "upgrade", "head", env=env)
    with serve(project, uv_run("full-stack"), env=env) as server:
        assert_fuzzed_cleanly("postgresql+redis+all", fuzz(server, tmp_path, auth=True))


def test_no_secret_reaches_the_logs_the_answers_or_the_answers_file(
    full_stack: tuple[Project, str], postgres: PostgresServer
) -> None:
    """A served project, logging everything at DEBUG with every request in the access log,
    given a password in DATABASE_URL and REDIS_URL (Redis is down, so its errors are logged),
    registers, logs in and refuses a bad token: no password or token is written anywhere."""
    project, _ = full_stack
    db_password, redis_password = "db-pw-7d21e0", "redis-pw-03c9ab"
    database_url = postgres.create_database("full_stack_secrets")
    env = {
        # The test server trusts local connections: the password is carried, not checked.
        "DATABASE_URL": database_url.replace("://postgres@", f"://postgres:{db_password}@"),
        "REDIS_URL": f"redis://:{redis_password}@127.0.0.1:{free_port()}/0",
        "LOG_LEVEL": "debug",
        "ACCESS_LOG_SAMPLE_RATE": "1",
    }
    assert db_password in env["DATABASE_URL"]
    project.uv("alembic", "upgrade", "head", env=env)
    password, wrong = "secret-pw-5b8f2a71", "wrong-pw-c41d9e"
    with serve(project, uv_run("full-stack"), env=env) as server:
        user = {"email": "ada@example.org", "name": "Ada", "password": password}
        answers = [server.request("POST", "/api/auth/register", user)]
        token = log_in(server, user["email"], password)["Authorization"].removeprefix("Bearer ")
        answers += [
            server.get(f"/api/auth/me?access_token={token}", {"Authorization": f"Bearer {token}"}),
            server.get("/api/auth/me", {"Authorization": f"Bearer {token}x"}),
            server.request(
                "PUT",
                "/api/auth/password",
                {"current_password": wrong, "new_password": wrong + "-new"},
                {"Authorization": f"Bearer {token}"},
            ),
            server.get("/readyz"),
        ]
        assert [answer.status for answer in answers] == [201, 200, 401, 403, 503]
        port = server.base_url.rsplit(":", 1)[1]
        log = (project.path / f".server-{port}.log").read_text()
    assert '"path":"/api/auth/me"' in log  # the access log wrote every request
    assert "redis" in log.lower()  # and Redis's failures were logged
    secrets = (db_password, redis_password, password, wrong, token)
    leaked = [secret for secret in secrets if secret in log]
    assert not leaked, log[-5000:]
    for answer in answers[2:]:
        assert not [secret for secret in secrets if secret in answer.body.decode()]
    answers_file = (project.path / ".copier-answers.yml").read_text().lower()
    assert not [word for word in ("secret", "password", "token") if word in answers_file]


def test_readiness_names_redis_when_it_is_down(
    full_stack: tuple[Project, str], postgres: PostgresServer
) -> None:
    project, _ = full_stack
    dead_redis = f"redis://127.0.0.1:{free_port()}/0"
    env = {"DATABASE_URL": postgres.create_database("full_stack_noredis"), "REDIS_URL": dead_redis}
    with serve(project, uv_run("full-stack"), env=env) as server:
        assert server.get("/healthz").status == 200
        ready = server.get("/readyz")
        assert ready.status == 503
        body = ready.json()
        assert body["checks"]["database"] == "ok"
        assert body["checks"]["redis"].startswith("error")


def test_project_tests_stop_with_a_clear_error_without_redis(
    full_stack: tuple[Project, str],
) -> None:
    """Without a Redis server the cache would run degraded and one assertion fail far from
    the cause; the generated suite stops before the first test and names the server."""
    project, database_url = full_stack
    dead_redis = f"redis://127.0.0.1:{free_port()}/0"
    env = {"TEST_DATABASE_URL": database_url, "TEST_REDIS_URL": dead_redis}
    result = project.uv("pytest", "-q", "-p", "no:cacheprovider", env=env, check=False)
    assert result.returncode == pytest.ExitCode.USAGE_ERROR
    output = result.stdout + result.stderr
    assert f"these tests need a Redis server at {dead_redis}" in output
    assert "set TEST_REDIS_URL" in output
    assert " passed" not in output


def test_refuses_to_start_when_pools_exceed_max_connections(
    full_stack: tuple[Project, str], postgres: PostgresServer, redis: RedisServer
) -> None:
    project, database_url = full_stack
    env = {
        "DATABASE_URL": database_url,
        "REDIS_URL": redis.url(3),
        "WORKERS": "1",
        "DB_POOL_SIZE": "200",
        "DB_MAX_OVERFLOW": "200",
    }
    result = project.run(
        *uv_run("full-stack"), env={**env, "PORT": str(free_port())}, check=False, timeout=120
    )
    assert result.returncode != 0
    assert "max_connections" in result.stdout + result.stderr


@pytest.mark.parametrize("python_version", ["3.12", "3.13"])
def test_newer_pythons(template_repo: Path, tmp_path: Path, python_version: str) -> None:
    answers = {"python_version": python_version}
    project = Project(render(template_repo, tmp_path / "p", answers))
    project.sync(python_version)
    version = project.uv("python", "-c", "import sys; print(sys.version_info[:2])").stdout
    assert version.strip() == str(tuple(int(p) for p in python_version.split(".")))
    project.uv("pytest", "-q", "-p", "no:cacheprovider")
    lint(project)


def sweep_rows(stdout: str) -> dict[str, list[str]]:
    """The load-test table's rows by connection count, cells stripped."""
    rows = [line.split("|")[1:-1] for line in stdout.splitlines() if line.startswith("| ")]
    header = [cell.strip() for cell in rows[0]]
    assert header == [
        "connections", "avg ms", "p50 ms", "p95 ms", "p99 ms", "errors", "req/s",
        "edge hits", "L1 hits", "L2 hits", "peak RSS MB",
    ]  # fmt: skip
    return {row[0].strip(): [cell.strip() for cell in row[1:]] for row in rows[1:]}


def check_sweep(stdout: str, out: Path, generator: str) -> dict[str, object]:
    """The sweep ran both levels without errors, and its table, JSON and Markdown agree."""
    cells = sweep_rows(stdout)
    assert list(cells) == ["4", "16"]
    for level, (avg, p50, p95, p99, errors, rps, edge, _l1, l2, rss) in cells.items():
        assert errors == "0.00%", level
        assert float(rps.replace(",", "")) > 0, level
        assert 0 < float(p50) <= float(p95) <= float(p99), level
        assert float(avg) > 0, level
        assert float(edge.rstrip("%")) > 50, "the cached reads hit the edge cache"
        assert l2 == "-", "a memory-only project has no L2"
        assert 50 < float(rss) < 1000, "the peak RSS of the worker it started, in MB"
    report = json.loads((out / "loadtest.json").read_text())
    assert report["generator"] == generator
    assert report["mix_shares"] == {"comment": 0.02, "title": 0.02}
    assert [level["connections"] for level in report["levels"]] == [4, 16]
    for level, row in zip(report["levels"], cells.values(), strict=True):
        assert f"{level['rps']:,.0f}" == row[5]
        assert level["requests"] > 0
        assert level["errors"] == 0
    assert report["ceiling"]["rps"] > 0
    assert report["server_memory_mb"]["peak"] >= report["server_memory_mb"]["idle"] > 0
    markdown = (out / "loadtest.md").read_text()
    assert markdown in stdout
    assert f"Load generator ceiling ({generator}," in markdown
    assert "the server kept the others waiting" not in markdown, "every connection was served"
    return report


def test_load_test_tool_prints_the_sweep_table(demo: Project, tmp_path: Path) -> None:
    """bench/loadtest.py seeds, boots the app, sweeps two levels of the mix with writes and
    writes the table as Markdown, JSON and (matplotlib from the bench group) a PNG plot."""
    out = tmp_path / "results"
    result = demo.run(
        tool("uv"), "run", "--group", "bench", "python", "bench/loadtest.py", "--seed",
        "--users", "10", "--posts", "60", "--writes", "comment=0.02,title=0.02",
        "--connections", "4,16", "--duration", "1", "--warmup", "1", "--out", str(out),
    )  # fmt: skip
    check_sweep(result.stdout, out, "wrk")
    assert (out / "loadtest.png").read_bytes().startswith(b"\x89PNG\r\n")
    assert f"plot: {out / 'loadtest.png'}" in result.stdout


def test_load_test_tool_falls_back_to_a_python_client_without_wrk(
    demo: Project, tmp_path: Path
) -> None:
    """Without wrk on the PATH the same sweep runs with the Python client, which says so and
    measures its own ceiling the same way."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    if taskset := shutil.which("taskset"):
        (bin_dir / "taskset").symlink_to(taskset)
    out = tmp_path / "results"
    result = demo.run(
        str(demo.path / ".venv" / "bin" / "python"), "bench/loadtest.py", "--users", "10",
        "--posts", "60", "--writes", "comment=0.02,title=0.02", "--connections", "4,16",
        "--duration", "1", "--warmup", "1", "--out", str(out),
        env={"PATH": str(bin_dir)},
    )  # fmt: skip
    assert "wrk is not installed" in result.stderr
    check_sweep(result.stdout, out, "Python client")


def test_load_test_tool_loads_a_server_it_is_given(demo: Project, tmp_path: Path) -> None:
    """With --url it seeds the database the server uses and loads it; the server's memory is
    not its to read, so those cells stay empty."""
    env = {"DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'served.db'}", "RATE_LIMITS": "{}"}
    demo.uv("alembic", "upgrade", "head", env=env)
    out = tmp_path / "results"
    with serve(demo, uv_run("demo"), env=env) as server:
        result = demo.uv(
            "python", "bench/loadtest.py", "--url", server.base_url, "--seed", "--users", "10",
            "--posts", "60", "--writes", "0.03", "--connections", "4", "--duration", "1",
            "--warmup", "0", "--out", str(out),
            env=env,
        )  # fmt: skip
        assert server.get("/api/posts?limit=1").status == 200
    cells = sweep_rows(result.stdout)
    assert list(cells) == ["4"]
    assert cells["4"][4] == "0.00%"
    assert cells["4"][-1] == "-"
    report = json.loads((out / "loadtest.json").read_text())
    assert report["target"] == server.base_url
    assert report["server_memory_mb"] is None
    assert report["mix_shares"] == pytest.approx({"comment": 0.01, "title": 0.01, "post": 0.01})
    assert "Server memory" not in (out / "loadtest.md").read_text()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--connections", "10,0"], "connection counts must be positive"),
        (["--connections", "ten"], "not a list of connection counts"),
        (["--writes", "delete=0.1"], "unknown write 'delete'"),
        (["--writes", "lots"], "not a share of writes"),
        (["--writes", "comment=0.6,title=0.6"], "shares must add up to at most 1"),
        (["--url", "http://127.0.0.1:8000/api/posts"], "--url takes a base URL"),
        (["--pid", "1"], "--pid takes the process id of the --url server's worker"),
        (["--url", "http://127.0.0.1:8000", "--pid", "999999999"], "--pid takes the process id"),
    ],
)
def test_load_test_tool_rejects_bad_arguments(demo: Project, args: list[str], message: str) -> None:
    result = demo.uv("python", "bench/loadtest.py", *args, check=False)
    assert result.returncode == 2
    assert message in result.stderr


def test_load_test_tool_says_when_the_server_it_is_given_does_not_answer(
    demo: Project,
) -> None:
    result = demo.uv(
        "python", "bench/loadtest.py", "--url", f"http://127.0.0.1:{free_port()}",
        "--connections", "4", "--duration", "1", check=False,
    )  # fmt: skip
    assert result.returncode == 1
    assert "did not answer" in result.stderr
    assert "is the server running there?" in result.stderr
    assert "Traceback" not in result.stderr


def test_soak_tool_prints_memory_connections_and_cache_bounds(
    demo: Project, tmp_path: Path
) -> None:
    """bench/soak.py holds the mix with writes for 20 s against a worker it starts: RSS at
    the start and the end, a slope too short to judge, no connection checked out once the
    load stopped, and each cache within its bound, all in one table; exit status 0."""
    out = tmp_path / "results"
    result = demo.uv(
        "python", "bench/soak.py", "--users", "10", "--posts", "60", "--writes",
        "comment=0.02,title=0.02,post=0.01", "--connections", "8", "--duration", "20",
        "--warmup", "5", "--interval", "1", "--out", str(out),
    )  # fmt: skip
    rows = [line.split("|")[1:-1] for line in result.stdout.splitlines() if line.startswith("| ")]
    assert [cell.strip() for cell in rows[0]] == ["figure", "value", "limit", "verdict"]
    cells = {row[0].strip(): [cell.strip() for cell in row[1:]] for row in rows[1:]}
    figures = list(cells)
    assert figures[:2] == ["RSS at start", "RSS at end"]
    for figure in figures[:2]:
        assert re.fullmatch(r"\d+\.\d MB", cells[figure][0]), cells[figure]
        assert 30 < float(cells[figure][0].split()[0]) < 1000, figure
    slope = re.fullmatch(r"RSS slope \((\d+) samples over (\d+) s after the warm-up\)", figures[2])
    assert slope, figures[2]
    assert int(slope[1]) >= 10
    assert 10 <= int(slope[2]) <= 20
    value, limit, verdict = cells[figures[2]]
    assert re.fullmatch(r"[+-]\d+\.\d\d ± \d+\.\d\d MB/hour", value), value
    assert limit == "0.5 MB/hour"
    assert verdict.startswith("too short to judge: "), verdict
    assert cells["database connections checked out at rest"] == ["0", "0", "ok"]
    for figure, bound in (("L1 cache entries", 5000), ("edge cache entries", 5000)):
        entries, limit, verdict = cells[figure]
        assert int(limit.replace(",", "")) == bound, figure
        assert 0 < int(entries.replace(",", "")) <= bound, figure
        assert verdict == "ok", figure
    assert figures[3:] == [
        "database connections checked out at rest", "L1 cache entries", "edge cache entries"
    ]  # fmt: skip
    assert "No check failed." in result.stdout
    report = json.loads((out / "soak.json").read_text())
    assert report["requests"] > 0
    assert report["errors"] == 0
    assert len(report["rss_samples"]) >= 15
    assert (out / "soak.md").read_text() in result.stdout


def test_soak_tool_fails_on_a_leak_it_can_judge(demo: Project) -> None:
    """The verdicts behind the exit status: a slope over the budget fails once 300 s of samples
    are fitted, a flat one passes; a connection left checked out and a cache over its bound
    fail."""
    code = """
import sys
sys.path.insert(0, "bench")
import soak

def verdict(checks, start):
    return next(c.verdict for c in checks if c.figure.startswith(start))

growing = [(t, 100 + t / 3600) for t in range(0, 400, 5)]  # 1 MB/hour
flat = [(t, 100.0) for t in range(0, 400, 5)]
assert verdict(soak.memory_checks(growing, 60), "RSS slope") == "FAIL"
assert verdict(soak.memory_checks(flat, 60), "RSS slope") == "ok"
assert verdict(soak.memory_checks(growing[:40], 60), "RSS slope").startswith("too short")
at_rest = {
    ("db_pool_checked_out_connections", frozenset()): 1.0,
    ("cache_entries", frozenset({("layer", "l1")})): 11.0,
    ("cache_max_entries", frozenset({("layer", "l1")})): 10.0,
}
checks = soak.rest_checks(at_rest)
assert [c.verdict for c in checks] == ["FAIL", "FAIL", "FAIL"], checks
assert checks[2].value == "not in /metrics"
"""
    demo.uv("python", "-c", code)


def test_mixed_load_bench_prints_read_only_and_mixed_runs_side_by_side(demo: Project) -> None:
    """bench/mixed_load.py seeds, serves, and drives reads with each kind of write, without
    errors; a write that changes nothing cached (a pending comment) leaves the hit rates up."""
    result = demo.uv(
        "python", "bench/mixed_load.py", "--duration", "1", "--rounds", "1", "--users", "10",
        "--posts", "60", "--connections", "8", "--mix", "comment=0.05",
        "--mix", "title=0.05,post=0.02", "--raw",
    )  # fmt: skip
    rows = [line.split("|")[1:-1] for line in result.stdout.splitlines() if line.startswith("| ")]
    cells = {row[0].strip(): [cell.strip() for cell in row[1:]] for row in rows[1:]}
    assert list(cells) == [
        "read-only",
        "+5% comment",
        "+5% title, +2% post",
        "raw ASGI app, same bytes (read-only mix)",
    ]
    for name, (rate, _ratio, _p50, _p99, errors, *_hit_rates) in cells.items():
        assert float(rate.replace(",", "")) > 0, name
        assert errors == "0", name
    edge_hits = float(cells["+5% comment"][5].rstrip("%"))
    assert edge_hits > 80, "pending comments must not drop the cached reads"


def test_cache_hit_rate_bench_replays_a_zipf_workload(demo: Project) -> None:
    result = demo.uv("python", "bench/cache_hit_rate.py", "--keys", "2000", "--requests", "20000")
    assert "L1" in result.stdout


def test_list_bench_compares_each_app_with_its_hand_written_twin(
    demo: Project, tmp_path: Path
) -> None:
    """bench/list_posts.py runs on a seeded database and every server answers without errors."""
    env = {"DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'bench.db'}"}
    demo.uv("alembic", "upgrade", "head", env=env)
    demo.uv("demo-seed", "--users", "20", "--posts", "200", "--comments", "400", env=env)
    result = demo.uv(
        "python", "bench/list_posts.py", "--duration", "1", "--runs", "1", "--connections", "8",
        env=env,
    )  # fmt: skip
    rows = [line.split("|")[1:-1] for line in result.stdout.splitlines() if line.startswith("| ")]
    cells = {row[0].strip(): [cell.strip() for cell in row[1:]] for row in rows[1:]}
    assert list(cells) == [
        "generated app, as shipped (middleware chain)",
        "hand-written Core, same middleware chain",
        "generated app, middleware removed",
        "hand-written Core, no middleware",
        "ORM entities + joinedload, no middleware",
    ]
    for rate, p99, errors, _versus in cells.values():
        assert float(rate.replace(",", "")) > 0
        assert re.fullmatch(r"[\d.]+(us|ms|s)", p99), p99  # wrk's latency, not another column
        assert errors == "0"
    assert cells["hand-written Core, no middleware"][3] == "+0.0%"
