"""Projects without the example blog (`--no-examples`): the core, health checks, their own
tests and linters, migrations in sync, and `fastapi-easy add resource` on top.

Two installs: the defaults through the CLI, and PostgreSQL + Redis + every feature, where
auth keeps the users domain without the blog's parts (accounts without posts).
"""

import shlex
import subprocess
import time
from pathlib import Path

import pytest

from fastapi_easy.template import choices

from .e2e import Server, serve, uv_run
from .project import Project, render, tool
from .servers import PostgresServer, RedisServer
from .test_e2e import PYTHON, lint, quick_start_commands, sign_up
from .test_resource import add

pytestmark = pytest.mark.e2e

PRODUCTS = ["products", "name:str", "price:decimal", "category:str:index", "sku:str:unique"]


def assert_products_api(server: Server, headers: dict[str, str], body: dict[str, object]) -> None:
    created = server.request("POST", "/api/products", body, headers)
    assert created.status == 201, created.body
    product = created.json()
    assert isinstance(product, dict)
    assert server.get(f"/api/products/{product['id']}").json() == product
    page = server.get("/api/products?category=shoes&limit=5").json()
    assert isinstance(page, dict)
    assert [item["id"] for item in page["items"]] == [product["id"]]
    assert server.get("/api/products?category=hats").json() == {"items": [], "next_cursor": None}


def test_defaults_without_examples(tmp_path: Path) -> None:
    """`fastapi-easy new bare --defaults --no-examples`, then a resource added to it."""
    started = time.monotonic()
    result = subprocess.run(
        [tool("fastapi-easy"), "new", "bare", "--defaults", "--no-examples"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, result.stderr
    project = Project(tmp_path / "bare")
    assert not (project.path / "src" / "bare" / "users").exists()
    project.sync(PYTHON)
    lint(project)
    serve_cmd, test_cmd = quick_start_commands(project.path / "README.md")
    output = project.run(*shlex.split(test_cmd), "-q", "-p", "no:cacheprovider").stdout
    assert " passed" in output
    env = {"DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'app.db'}"}
    project.uv("alembic", "upgrade", "head", env=env)
    project.uv("alembic", "check", env=env)
    with serve(project, shlex.split(serve_cmd), env=env) as server:
        ready = server.get("/readyz")
        assert ready.status == 200
        assert ready.json() == {"status": "ok", "checks": {"database": "ok"}}
        assert server.get("/api/users").status == 404
        assert "http_requests_total" in server.get("/metrics").body.decode()

    refused = add(project.path, "invoices", "total:decimal", "owner_id:ref:users")
    assert refused.returncode == 1
    assert "there is no resource 'users' in this project" in refused.stderr
    added = add(project.path, *PRODUCTS)
    assert added.returncode == 0, added.stderr
    lint(project)
    project.uv("pytest", "-q", "-p", "no:cacheprovider", "tests/test_products.py")
    project.uv("alembic", "upgrade", "head", env=env)
    project.uv("alembic", "check", env=env)
    with serve(project, shlex.split(serve_cmd), env=env) as server:
        body = {"name": "Boot", "price": "49.90", "category": "shoes", "sku": "B-1"}
        assert_products_api(server, {}, body)
    print(f"\n[timing] no-examples defaults, with a resource: {time.monotonic() - started:.1f}s")


def test_postgresql_redis_all_features_without_examples(
    template_repo: Path, tmp_path: Path, postgres: PostgresServer, redis: RedisServer
) -> None:
    """Auth without the blog: users are the accounts, a resource can reference them, and
    writes need a token."""
    started = time.monotonic()
    answers = {
        "project_name": "Bare Stack",
        "python_version": PYTHON,
        "database": "postgresql",
        "cache": "redis",
        "features": choices("features"),
        "examples": False,
    }
    project = Project(render(template_repo, tmp_path / "p", answers))
    assert not (project.path / "src" / "bare_stack" / "posts").exists()
    added = add(project.path, *PRODUCTS, "owner_id:ref:users")
    assert added.returncode == 0, added.stderr
    project.sync(PYTHON)
    lint(project)
    env = {
        "TEST_DATABASE_URL": postgres.create_database("bare_stack_tests"),
        "TEST_REDIS_URL": redis.url(7),
    }
    output = project.uv("pytest", "-q", "-p", "no:cacheprovider", env=env).stdout
    assert " passed" in output

    app_db = postgres.create_database("bare_stack_app")
    run_env = {"DATABASE_URL": app_db, "REDIS_URL": redis.url(8)}
    project.uv("alembic", "upgrade", "head", env=run_env)
    project.uv("alembic", "check", env=run_env)
    with serve(project, uv_run("bare-stack"), env=run_env) as server:
        ready = server.get("/readyz")
        assert ready.status == 200, ready.body
        assert ready.json()["checks"] == {"database": "ok", "redis": "ok"}
        user_id, headers = sign_up(server)
        assert server.get(f"/api/users/{user_id}").json()["name"] == "Ada"
        body = {"name": "Boot", "price": "49.90", "category": "shoes", "sku": "B-1"}
        anonymous = server.request("POST", "/api/products", {**body, "owner_id": user_id})
        assert anonymous.status == 401
        assert_products_api(server, headers, {**body, "owner_id": user_id})
        metrics = server.get("/metrics").body.decode()
        assert 'route="/api/products/{product_id}"' in metrics
    print(f"\n[timing] no-examples postgresql-redis-all: {time.monotonic() - started:.1f}s")
