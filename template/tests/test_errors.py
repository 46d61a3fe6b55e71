"""Every error answers with the same RFC 9457 problem-details shape, and leaks nothing."""

import logging
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, HTTPException
from pydantic import BaseModel, Field
from sqlalchemy import exc as sa_exc

PROBLEM_KEYS = {"type", "title", "status", "instance", "request_id"}


class NewThing(BaseModel):
    name: str = Field(min_length=1)
    password: str
    count: int = Field(ge=0)


@pytest.fixture
def app(app: FastAPI) -> FastAPI:
    @app.post("/test/things")
    async def create_thing(thing: NewThing) -> dict[str, str]:
        return {"name": thing.name}

    @app.get("/test/crash")
    async def crash() -> None:
        raise RuntimeError("SELECT password FROM users WHERE id = 1")

    @app.get("/test/teapot")
    async def teapot() -> None:
        raise HTTPException(418, "Short and stout.", headers={"X-Brew": "tea"})

    @app.get("/test/database-down")
    async def database_down() -> None:
        raise ConnectionRefusedError("connect call failed ('127.0.0.1', 5432)")

    @app.get("/test/connection-dropped")
    async def connection_dropped() -> None:
        raise sa_exc.OperationalError("SELECT 1", {}, OSError("connection was closed"))

    @app.get("/test/structured")
    async def structured() -> None:
        raise HTTPException(400, {"reason": "several things"})

    return app


def assert_problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body.keys() >= PROBLEM_KEYS
    assert body["type"] == "about:blank"
    assert body["status"] == status
    assert body["request_id"] == response.headers["x-request-id"]
    return body


async def test_unknown_route_is_a_404_problem(client: httpx.AsyncClient) -> None:
    body = assert_problem(await client.get("/no/such/route"), 404)
    assert body["title"] == "Not Found"
    assert body["instance"] == "/no/such/route"


async def test_missing_row_is_a_404_problem(client: httpx.AsyncClient) -> None:
    body = assert_problem(await client.get("/api/users/987654"), 404)
    assert body["instance"] == "/api/users/987654"
    assert body["detail"]


async def test_conflict_is_a_409_problem(client: httpx.AsyncClient) -> None:
    user = {"email": "grace@example.com", "name": "Grace Hopper"}
    assert (await client.post("/api/users", json=user)).status_code == 201
    body = assert_problem(await client.post("/api/users", json=user), 409)
    assert body["title"] == "Conflict"
    assert "grace@example.com" in body["detail"]


async def test_wrong_method_is_a_405_problem(client: httpx.AsyncClient) -> None:
    response = await client.delete("/healthz")
    assert_problem(response, 405)
    assert response.headers["allow"] == "GET"


async def test_http_exception_keeps_detail_and_headers(client: httpx.AsyncClient) -> None:
    response = await client.get("/test/teapot")
    body = assert_problem(response, 418)
    assert body["detail"] == "Short and stout."
    assert response.headers["x-brew"] == "tea"


async def test_structured_detail_becomes_an_extension(client: httpx.AsyncClient) -> None:
    body = assert_problem(await client.get("/test/structured"), 400)
    assert "detail" not in body
    assert body["errors"] == {"reason": "several things"}


@pytest.mark.parametrize("path", ["/test/database-down", "/test/connection-dropped"])
async def test_an_unreachable_database_is_a_503_to_retry(
    client: httpx.AsyncClient, path: str
) -> None:
    response = await client.get(path)
    assert response.status_code == 503
    assert response.headers["retry-after"] == "1"
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json().keys() >= PROBLEM_KEYS
    assert "5432" not in response.text
    assert "SELECT" not in response.text


async def test_validation_errors_name_each_field(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/test/things", json={"name": "", "password": "hunter2", "count": -1}
    )
    body = assert_problem(response, 422)
    assert body["detail"] == "The request is invalid."
    fields = {error["field"]: error for error in body["errors"]}
    assert set(fields) == {"body.name", "body.count"}
    assert fields["body.count"]["type"] == "greater_than_equal"
    assert "hunter2" not in response.text


async def test_malformed_json_is_a_422_problem(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/test/things", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    body = assert_problem(response, 422)
    assert body["errors"][0]["type"] == "json_invalid"


async def test_body_too_large_is_a_413_problem(client: httpx.AsyncClient, app: FastAPI) -> None:
    limit = app.state.settings.max_body_size
    response = await client.post("/test/things", content=b"x" * (limit + 1))
    body = assert_problem(response, 413)
    assert str(limit) in body["detail"]


async def test_crash_is_a_500_problem_without_internals(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    response = await client.get("/test/crash", headers={"X-Request-ID": "crash-1"})
    body = assert_problem(response, 500)
    assert body["title"] == "Internal Server Error"
    assert "detail" not in body
    assert "SELECT" not in response.text
    assert "Traceback" not in response.text
    assert response.headers["x-content-type-options"] == "nosniff"
    [record] = [r for r in caplog.records if r.levelno == logging.ERROR and r.exc_info]
    assert record.request_id == "crash-1"  # type: ignore[attr-defined]
    assert "SELECT password" in str(record.exc_info[1])  # type: ignore[index]
