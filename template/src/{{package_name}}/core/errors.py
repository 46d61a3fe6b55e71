"""One error shape for every 4xx and 5xx: RFC 9457 problem details.

Clients parse one format whatever failed: a missing route, a validation error, a rate limit
or a crash. Every problem carries the request ID, so a user's report leads straight to the
log lines. Responses never contain stack traces, SQL or the offending input (it may hold a
password); unexpected exceptions are logged in full instead.

Example::

    {"type": "about:blank", "title": "Not Found", "status": 404,
     "detail": "Post 7 does not exist.", "instance": "/api/posts/7", "request_id": "9f1c..."}
"""

import logging
from collections.abc import Mapping, Sequence
from http import HTTPStatus
from types import MappingProxyType
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict
from pydantic.json_schema import models_json_schema
from sqlalchemy import exc as sa_exc
from starlette.exceptions import HTTPException
from starlette.responses import Response
from starlette.types import Scope

log = logging.getLogger(__name__)

PROBLEM_MEDIA_TYPE = "application/problem+json"


class Problem(BaseModel):
    """The body of every error response, for the OpenAPI schema (`document_problems`)."""

    model_config = ConfigDict(extra="allow")

    type: str = "about:blank"
    title: str
    status: int
    detail: str | None = None
    instance: str | None = None
    request_id: str | None = None


class FieldError(BaseModel):
    field: str
    message: str
    type: str


class ValidationProblem(Problem):
    """A 422: each invalid field, without the value that was refused. A 422 from the
    domain (an unknown author, say) has a ``detail`` and no ``errors``."""

    errors: list[FieldError] = []


class DomainError(Exception):
    """A request the domain refuses, with a message safe to show the client.

    Services raise subclasses (``PostNotFound(NotFound)``) and know nothing of HTTP;
    `domain_exception_handler` turns them into problem details by their kind.
    """

    status = 400
    headers: Mapping[str, str] | None = None


class Unauthorized(DomainError):
    """No valid credentials. RFC 6750: the answer names the scheme to use."""

    status = 401
    headers: Mapping[str, str] | None = MappingProxyType({"WWW-Authenticate": "Bearer"})


class Forbidden(DomainError):
    status = 403


class NotFound(DomainError):
    status = 404


class Conflict(DomainError):
    status = 409


class InvalidReference(DomainError):
    """The input names something that does not exist (an unknown author, say)."""

    status = 422


def problem_response(
    status: int,
    detail: str | None = None,
    *,
    scope: Scope | None = None,
    headers: Mapping[str, str] | None = None,
    extensions: Mapping[str, Any] | None = None,
) -> Response:
    """A problem-details response; with ``type`` "about:blank" the title is the status phrase."""
    body: dict[str, Any] = {
        "type": "about:blank",
        "title": HTTPStatus(status).phrase,
        "status": status,
    }
    if detail:
        body["detail"] = detail
    if scope is not None:
        body["instance"] = scope["path"]
        request_id = scope.get("state", {}).get("request_id")
        if request_id:
            body["request_id"] = request_id
    if extensions:
        body.update(extensions)
    return Response(
        orjson.dumps(body), status_code=status, headers=headers, media_type=PROBLEM_MEDIA_TYPE
    )


async def http_exception_handler(request: Request, exc: Exception) -> Response:
    """``HTTPException`` from endpoints, and the router's own 404 and 405."""
    assert isinstance(exc, HTTPException)
    detail = exc.detail if exc.detail != HTTPStatus(exc.status_code).phrase else None
    extensions = None
    if detail is not None and not isinstance(detail, str):
        # A structured detail (a dict or list) is kept as an extension member: RFC 9457
        # requires "detail" to be a string.
        detail, extensions = None, {"errors": exc.detail}
    return problem_response(
        exc.status_code, detail, scope=request.scope, headers=exc.headers, extensions=extensions
    )


async def domain_exception_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, DomainError)
    return problem_response(exc.status, str(exc), scope=request.scope, headers=exc.headers)


# Raised when the database cannot be reached, drops the connection, is restarting, or the
# pool has no connection to give within DB_POOL_TIMEOUT: the request may well succeed a
# moment later, so the answer says so (503 + Retry-After) rather than blaming the server.
DATABASE_UNAVAILABLE: tuple[type[Exception], ...] = (
    sa_exc.OperationalError,
    sa_exc.InterfaceError,
    sa_exc.TimeoutError,
    ConnectionError,
    TimeoutError,
)
# The same from PostgreSQL's error codes: connection exceptions (class 08), the server
# shutting down or starting up (57P01-57P03), no connection slot left (53300), a statement
# cancelled at DB_STATEMENT_TIMEOUT_MS (57014; through PgBouncer the driver enforces that
# timeout itself and raises TimeoutError, so both modes answer alike).
UNAVAILABLE_SQLSTATES = ("08", "57P01", "57P02", "57P03", "53300", "57014")
RETRY_AFTER_SECONDS = "1"


def database_unavailable(exc: Exception) -> bool:
    if isinstance(exc, DATABASE_UNAVAILABLE):
        return True
    if isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated:
        return True
    sqlstate = getattr(getattr(exc, "orig", exc), "sqlstate", None) or ""
    return sqlstate.startswith(UNAVAILABLE_SQLSTATES)


def _unavailable(request: Request, exc: Exception) -> Response:
    log.warning("database unavailable in %s %s: %r", request.method, request.url.path, exc)
    return problem_response(
        503,
        "The database is unavailable; retry shortly.",
        scope=request.scope,
        headers={"Retry-After": RETRY_AFTER_SECONDS},
    )


async def database_error_handler(request: Request, exc: Exception) -> Response:
    """503 for a database that is unavailable; any other database error is a bug (500)."""
    if database_unavailable(exc):
        return _unavailable(request, exc)
    return await unhandled_exception_handler(request, exc)


async def driver_error_handler(request: Request, exc: Exception) -> Response:
    """The driver's own errors arrive unwrapped only from opening a connection."""
    return _unavailable(request, exc)


async def validation_exception_handler(request: Request, exc: Exception) -> Response:
    """422 listing each invalid field as ``{"field": "body.title", "message": ..., "type": ...}``.

    The rejected input is left out on purpose: it may be a password or a token.
    """
    assert isinstance(exc, RequestValidationError)
    errors = [
        {
            "field": ".".join(str(part) for part in error["loc"]),
            "message": error["msg"],
            "type": error["type"],
        }
        for error in exc.errors()
    ]
    return problem_response(
        422, "The request is invalid.", scope=request.scope, extensions={"errors": errors}
    )


async def unhandled_exception_handler(request: Request, exc: Exception) -> Response:
    """Last resort for errors raised in the middleware outside ``RequestContextMiddleware``.

    Errors from the application itself are logged and answered by that middleware, which
    still knows the request ID (see ``core/http.py``).
    """
    log.error("unhandled error in %s %s", request.method, request.url.path, exc_info=exc)
    return problem_response(500, scope=request.scope)


# Answers every operation with a body can give before its handler runs.
BODY_PROBLEMS = {
    "400": "The body cannot be decoded (it is not UTF-8)",
    "413": "The body is larger than MAX_BODY_SIZE",
}


def document_problems(app: FastAPI) -> None:
    """Make the app's OpenAPI schema describe the error responses it really sends.

    FastAPI documents a 422 shaped like its own validation error, as ``application/json``,
    and leaves the error responses a route declares without a model untyped. Here every
    4xx and 5xx declared without a body of its own is a `Problem` (a 422 a
    `ValidationProblem`) in ``application/problem+json``, and operations that take a body
    also list the 400 and 413 the framework and `BodySizeLimitMiddleware` answer before
    the handler runs. A client generated from the schema then parses errors correctly, and
    a schema-driven fuzzer (the project's own CI runs schemathesis) checks every answer.
    """
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            _describe_problems(generate())
        return app.openapi_schema  # type: ignore[return-value]

    app.openapi = openapi  # type: ignore[method-assign]


def _describe_problems(schema: dict[str, Any]) -> None:
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    for unused in ("HTTPValidationError", "ValidationError"):
        components.pop(unused, None)
    models = [(Problem, "serialization"), (ValidationProblem, "serialization")]
    _, definitions = models_json_schema(models, ref_template="#/components/schemas/{model}")
    components.update(definitions["$defs"])
    for operations in schema.get("paths", {}).values():
        for operation in operations.values():
            responses = operation.setdefault("responses", {})
            if "requestBody" in operation:
                for code, description in BODY_PROBLEMS.items():
                    responses.setdefault(code, {"description": description})
            for code, response in responses.items():
                if code[0] in "45" and _untyped(response):
                    model = ValidationProblem if code == "422" else Problem
                    response["content"] = problem_content(model)


def problem_content(model: type[Problem] = Problem) -> dict[str, Any]:
    """The ``content`` of an error response in the OpenAPI schema (`document_problems`)."""
    return {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": f"#/components/schemas/{model.__name__}"}}}


def _untyped(response: dict[str, Any]) -> bool:
    """No body declared, or FastAPI's stock validation error."""
    content = response.get("content")
    if not content:
        return True
    schema = content.get("application/json", {}).get("schema", {})
    return not schema or schema.get("$ref", "").endswith("/HTTPValidationError")


def install_error_handlers(app: FastAPI, driver_errors: Sequence[type[Exception]] = ()) -> None:
    """Answer every error with problem details, and say so in the OpenAPI schema.

    ``driver_errors``: the database driver's own error classes (``core.db.driver_errors``),
    which reach the application unwrapped when a connection cannot be opened."""
    app.add_exception_handler(HTTPException, http_exception_handler)
    app.add_exception_handler(DomainError, domain_exception_handler)
    for error in (*DATABASE_UNAVAILABLE, sa_exc.DBAPIError):
        app.add_exception_handler(error, database_error_handler)
    for error in driver_errors:
        app.add_exception_handler(error, driver_error_handler)
    app.add_exception_handler(RequestValidationError, validation_exception_handler)
    app.add_exception_handler(Exception, unhandled_exception_handler)
    document_problems(app)
