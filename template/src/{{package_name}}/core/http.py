"""The HTTP middleware chain: request context, security headers, CORS, gzip, body size limit.

Every class here is plain ASGI. ``BaseHTTPMiddleware`` (and ``@app.middleware("http")``)
run the endpoint in a separate task and copy each response through a memory stream: a few of
them cost more than the endpoint they wrap (bench/README.md has the numbers). A plain ASGI
layer costs one function call, plus one more per message if it wraps ``send``; that
wrapper is where the time goes, so the per-request concerns that all touch the response
headers (request ID, timing, access log, security headers, the last-resort 500) share one
layer and one ``send`` wrapper, and the other layers wrap ``send`` only when they have work
to do (a client that accepts gzip, a body without a declared length).
"""

import asyncio
import gzip
import logging
import re
import time
from collections.abc import Iterable, Sequence
from contextvars import ContextVar
from random import getrandbits, random
from time import perf_counter
from typing import Protocol

import orjson
from starlette.exceptions import HTTPException
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .errors import problem_response
from .routes import route_labels

log = logging.getLogger(__name__)

REQUEST_ID_HEADER = b"x-request-id"
SERVER_TIMING_HEADER = b"server-timing"
CSP_HEADER = b"content-security-policy"
CSP = b"default-src 'none'; frame-ancestors 'none'"
# What a request whose client closed the connection before the answer is recorded as
# (nginx's status for it); no response is sent.
CLIENT_CLOSED_REQUEST = 499

# The ID of the request being served, for log records (see `install_request_id_logging`)
# and error responses. "-" outside a request.
request_id_var: ContextVar[str] = ContextVar("request_id", default="-")

# Accept a caller's ID only if it is short and plain, so it is safe to log and to echo.
_VALID_REQUEST_ID = re.compile(rb"[A-Za-z0-9._:-]{1,128}")


def install_request_id_logging() -> None:
    """Give every log record a ``request_id`` attribute (usable as ``%(request_id)s``).

    A record factory rather than a handler filter: it works for every handler, including
    the ones test tools and log shippers add, and records logged outside a request get "-".
    """
    factory = logging.getLogRecordFactory()
    if getattr(factory, "adds_request_id", False):
        return

    def record_factory(*args: object, **kwargs: object) -> logging.LogRecord:
        record = factory(*args, **kwargs)
        record.request_id = request_id_var.get()
        return record

    record_factory.adds_request_id = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(record_factory)


def configure_access_log(logger: logging.Logger) -> None:
    """Write access-log records as bare JSON lines, one per request, to stderr.

    The record's message already is the JSON document; the root format would prefix it
    with text and break line-oriented JSON parsers, so this logger does not propagate.
    """
    if logger.handlers:
        return
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger.addHandler(handler)
    logger.propagate = False


class SecurityHeaders:
    """Response headers that close whole classes of browser attacks on an API.

    ``nosniff`` on every response stops browsers from executing a JSON body as script.
    Against clickjacking each response carries one anti-framing header: API responses the
    CSP ``frame-ancestors 'none'`` (the CSP also forbids loading anything from them), HTML
    (only the ``/docs`` page here, which gets no CSP because Swagger UI loads its scripts
    from a CDN) ``X-Frame-Options: DENY``. Not both: the CSP specification says
    ``frame-ancestors`` obsoletes ``X-Frame-Options``, and browsers ignore the older header
    on a response that has both; every browser still supported has had ``frame-ancestors``
    for a decade. HSTS is sent only when configured: it is meaningful only behind TLS and
    hard to undo once browsers have cached it. An endpoint that sets one of these headers
    itself (a page that may be framed sets its own CSP) keeps its own value.

    The set follows OWASP's REST security cheat sheet. Headers that only govern documents
    (``Referrer-Policy``, ``Cross-Origin-Opener-Policy``) are left out: each response
    header costs uvicorn about half a microsecond to validate and write, measurable on a
    cached endpoint, for nothing a JSON response can use.
    """

    def __init__(self, *, hsts_max_age: int = 0) -> None:
        common = [(b"x-content-type-options", b"nosniff")]
        if hsts_max_age > 0:
            hsts = f"max-age={hsts_max_age}; includeSubDomains".encode()
            common.append((b"strict-transport-security", hsts))
        self.for_api = (*common, (CSP_HEADER, CSP))
        self.for_html = (*common, (b"x-frame-options", b"DENY"))
        self.names = frozenset(name for name, _ in (*self.for_api, *self.for_html))

    def added(
        self, headers: Sequence[tuple[bytes, bytes]], *extra: tuple[bytes, bytes]
    ) -> list[tuple[bytes, bytes]]:
        """A new list: ``headers``, then ``extra``, then the security headers they lack.

        One list built in one go: this runs for every response.
        """
        # ASGI requires lowercase header names, so names compare as they are.
        for name, value in headers:
            if name in self.names or (name == b"content-type" and value.startswith(b"text/html")):
                break
        else:
            return [*headers, *extra, *self.for_api]
        # Rare: an endpoint set one of these itself, or the body is HTML.
        present = {name for name, _ in headers}
        html = any(n == b"content-type" and v.startswith(b"text/html") for n, v in headers)
        wanted = self.for_html if html else self.for_api
        return [*headers, *extra, *(h for h in wanted if h[0] not in present)]


class RequestObserver(Protocol):
    """Told of every request by `RequestContextMiddleware` (the metrics, when enabled).

    An observer instead of a layer of its own: that layer already reads the clock and sees
    every status, and a second layer wrapping ``send`` would pay for both again.
    """

    def started(self, scope: Scope) -> None: ...

    def finished(self, scope: Scope, status: int, seconds: float) -> None: ...


class RequestContextMiddleware:
    """What every request gets: an ID, timing, a sampled access log, security headers, and
    a problem-details 500 if the application fails.

    - ``X-Request-ID``: the caller's (from a proxy or another service) if well formed, else a
      new random one. Stored in ``scope["state"]["request_id"]`` (``request.state.request_id``)
      and in `request_id_var` for log records; echoed in the response.
    - ``Server-Timing: app;dur=<ms>``: time until the response headers, visible in browser
      dev tools without any tracing setup.
    - Access log: one JSON line per request, but only for a random ``sample_rate`` share
      of them plus every 5xx and every request slower than ``slow_ms``. Formatting and
      writing a line for every request would cost a large share of the throughput; the
      metrics count every request.
    - `SecurityHeaders` on every response.
    - ``observer`` (optional) is told when each request starts and how it ended.
    - An unexpected exception is logged once, with its traceback and the request ID, and
      answered with a bare 500 problem (no stack trace, no SQL) carrying all the headers
      above. Starlette's own last-resort handler runs outside every middleware, where the
      request ID is already gone. If the response had already started there is nothing left
      to answer with: the error is re-raised for the server to close the connection.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        access_logger: logging.Logger,
        sample_rate: float = 0.01,
        slow_ms: float = 1000.0,
        security_headers: SecurityHeaders | None = None,
        observer: RequestObserver | None = None,
    ) -> None:
        self.app = app
        self.access_logger = access_logger
        self.sample_rate = sample_rate
        self.slow_ms = slow_ms
        self.security_headers = security_headers or SecurityHeaders()
        self.observer = observer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        start = perf_counter()
        request_id = _incoming_request_id(scope["headers"]) or new_request_id()
        scope.setdefault("state", {})["request_id"] = request_id
        token = request_id_var.set(request_id)
        observer = self.observer
        if observer is not None:
            observer.started(scope)
        status = 0
        response_bytes = 0
        security_headers = self.security_headers

        async def send_with_context(message: Message) -> None:
            nonlocal status, response_bytes
            if message["type"] == "http.response.start":
                status = message["status"]
                timing = b"app;dur=%.1f" % ((perf_counter() - start) * 1000)
                message["headers"] = security_headers.added(
                    message.get("headers", ()),
                    (REQUEST_ID_HEADER, request_id.encode()),
                    (SERVER_TIMING_HEADER, timing),
                )
            elif message["type"] == "http.response.body":
                response_bytes += len(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, receive, send_with_context)
        except asyncio.CancelledError:
            # The client left (or the server is stopping) before the answer: nobody was
            # sent a 500, so neither the metrics nor the access log count one.
            status = status or CLIENT_CLOSED_REQUEST
            raise
        except Exception:
            log.exception("unhandled error in %s %s", scope["method"], scope["path"])
            if status:
                raise
            await problem_response(500, scope=scope)(scope, receive, send_with_context)
        finally:
            seconds = perf_counter() - start
            if observer is not None:
                observer.finished(scope, status or 500, seconds)
            if status >= 500 or seconds * 1000 >= self.slow_ms or random() < self.sample_rate:
                self._log(scope, request_id, status or 500, seconds * 1000, response_bytes)
            request_id_var.reset(token)

    def _log(
        self, scope: Scope, request_id: str, status: int, duration_ms: float, size: int
    ) -> None:
        level = logging.ERROR if status >= 500 else logging.INFO
        if not self.access_logger.isEnabledFor(level):
            return
        client = scope.get("client")
        line = {
            "ts": time.time(),
            "request_id": request_id,
            "method": scope["method"],
            "path": scope["path"],
            "route": route_labels(scope["app"])(scope),
            "status": status,
            "duration_ms": round(duration_ms, 2),
            "bytes": size,
            "client": client[0] if client else None,
        }
        self.access_logger.log(level, orjson.dumps(line).decode())


def new_request_id() -> str:
    """128 random bits as 32 hex digits. From ``random``, not ``os.urandom``: an ID needs to
    be unique, not secret, and this costs no system call (``random`` is reseeded in every
    forked worker, so workers do not repeat each other)."""
    return getrandbits(128).to_bytes(16).hex()  # a third of the time of f"{...:032x}"


def request_header(headers: Iterable[tuple[bytes, bytes]], name: bytes) -> bytes | None:
    """The first value of request header ``name`` (lowercase, as ASGI gives names), or None."""
    for header, value in headers:
        if header == name:
            return value
    return None


def _incoming_request_id(headers: Iterable[tuple[bytes, bytes]]) -> str | None:
    value = request_header(headers, REQUEST_ID_HEADER)
    return value.decode() if value is not None and _VALID_REQUEST_ID.fullmatch(value) else None


class CORS(CORSMiddleware):
    """Starlette's ``CORSMiddleware``, with a short path for requests without an ``Origin``.

    Server-to-server calls and same-origin ``GET``s send no ``Origin``. For those the library
    only adds ``Vary: Origin`` (so that no cache hands such a response to a cross-origin
    request), but it wraps the request headers in ``Headers`` and rewrites the response's
    through ``MutableHeaders`` to do so; with ``CORS_ORIGINS`` set that took about six
    points of a cached endpoint's throughput (``bench/middleware_cost.py``). Here such
    requests get the same ``Vary`` from a plain list operation. Every request that carries
    an ``Origin``, preflights included, gets the library's own handling.
    """

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or request_header(scope["headers"], b"origin") is not None:
            await super().__call__(scope, receive, send)
            return

        async def send_varying(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = _vary_on_origin(message.get("headers", ()))
            await send(message)

        await self.app(scope, receive, send_varying)


def _vary_on_origin(headers: Sequence[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """``headers`` with ``Origin`` added to ``Vary``, its values joined into one header as
    Starlette joins them."""
    varies = [value for name, value in headers if name.lower() == b"vary"]
    if not varies:
        return [*headers, (b"vary", b"Origin")]
    others = [(name, value) for name, value in headers if name.lower() != b"vary"]
    return [*others, (b"vary", b", ".join([*varies, b"Origin"]))]


class GZipMiddleware:
    """Gzip whole response bodies of ``minimum_size`` bytes or more, for clients that accept it.

    Written here instead of using Starlette's ``GZipMiddleware`` for two reasons. That one
    wraps every response, even for clients that do not accept gzip (to add ``Vary``), a
    noticeable share of a cached endpoint's time; this one steps aside for them. And it
    compresses streamed responses chunk by chunk, where this one leaves streams alone (an
    NDJSON export or server-sent events must reach the client as they are produced).

    Left untouched too: bodies that already have a ``Content-Encoding`` (a cache may store
    them compressed), partial content, and types that do not compress (images, archives:
    only text, JSON, XML and JavaScript are compressed). Level 5 of 9 by default: on this
    project's JSON, higher levels save few more bytes for more CPU, and level 1 saves CPU
    for somewhat larger bodies. Bodies of ``thread_minimum_size`` bytes or more are
    compressed in a worker thread so the event loop keeps serving.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        minimum_size: int = 1024,
        compresslevel: int = 5,
        thread_minimum_size: int = 256 * 1024,
    ) -> None:
        self.app = app
        self.minimum_size = minimum_size
        self.compresslevel = compresslevel
        self.thread_minimum_size = thread_minimum_size

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or b"gzip" not in (
            request_header(scope["headers"], b"accept-encoding") or b""
        ):
            await self.app(scope, receive, send)
            return

        start: Message | None = None

        async def send_compressed(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                if message["status"] == 206 or not _compressible(message.get("headers", ())):
                    await send(message)
                else:
                    start = message  # held back until the body shows whether to compress
                return
            if start is None:
                await send(message)
                return
            start, held = None, start
            body = message.get("body", b"")
            if (
                message["type"] == "http.response.body"
                and not message.get("more_body", False)
                and len(body) >= self.minimum_size
            ):
                compressed = await self._compress(body)
                held["headers"] = [
                    *((n, v) for n, v in held.get("headers", ()) if n.lower() != b"content-length"),
                    (b"content-encoding", b"gzip"),
                    (b"content-length", str(len(compressed)).encode()),
                    (b"vary", b"Accept-Encoding"),
                ]
                message = {**message, "body": compressed}
            await send(held)
            await send(message)

        await self.app(scope, receive, send_compressed)

    async def _compress(self, body: bytes) -> bytes:
        if len(body) >= self.thread_minimum_size:
            return await asyncio.to_thread(gzip.compress, body, self.compresslevel, mtime=0)
        return gzip.compress(body, self.compresslevel, mtime=0)


_COMPRESSIBLE = re.compile(rb"text/|application/(?:[\w.+-]*\+)?(?:json|xml|javascript|x-ndjson)")


def _compressible(headers: Iterable[tuple[bytes, bytes]]) -> bool:
    content_type = b""
    for name, value in headers:
        lowered = name.lower()
        if lowered == b"content-encoding":
            return False
        if lowered == b"content-type":
            content_type = value
    return _COMPRESSIBLE.match(content_type.lower()) is not None


class BodySizeLimitMiddleware:
    """Refuse request bodies larger than ``max_body_size`` bytes with 413.

    A declared ``Content-Length`` over the limit is refused before the endpoint runs and
    before a byte of the body is read. A chunked body is counted as it streams in and
    refused as soon as it passes the limit, so a client cannot make the server buffer
    an unbounded upload.

    FastAPI's own ``max_body_size`` (Starlette's ``RequestBodyLimitMiddleware``) builds a
    responder object and wraps ``receive`` and ``send`` for every request, and answers a
    declared oversize body in plain text; this layer wraps nothing when HTTP/1 framing already
    bounds the body, and answers with the same problem details as every other error.
    """

    def __init__(self, app: ASGIApp, *, max_body_size: int) -> None:
        self.app = app
        self.max_body_size = max_body_size

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        declared, chunked = _body_framing(scope["headers"])
        if declared is not None and declared > self.max_body_size:
            await self._too_large(scope, receive, send)
            return
        if not chunked and (declared is not None or scope.get("http_version") in ("1.0", "1.1")):
            # HTTP/1 delivers Content-Length bytes, or none without chunked transfer coding:
            # nothing to count. (HTTP/2 bodies may come without a declared length.)
            await self.app(scope, receive, send)
            return

        received = 0
        response_started = False

        async def receive_counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_size:
                    raise BodyTooLargeError(self.max_body_size)
            return message

        async def send_tracked(message: Message) -> None:
            nonlocal response_started
            if message["type"] == "http.response.start":
                response_started = True
            await send(message)

        try:
            await self.app(scope, receive_counted, send_tracked)
        except BodyTooLargeError:
            if response_started:
                raise
            await self._too_large(scope, receive, send)

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        detail = BodyTooLargeError(self.max_body_size).detail
        await problem_response(413, detail, scope=scope)(scope, receive, send)


def _body_framing(headers: Iterable[tuple[bytes, bytes]]) -> tuple[int | None, bool]:
    """The declared ``Content-Length`` and whether the body is chunked."""
    declared, chunked = None, False
    for name, value in headers:
        if name == b"content-length" and value.isdigit():
            declared = int(value)
        elif name == b"transfer-encoding":
            chunked = True
    return declared, chunked


class BodyTooLargeError(HTTPException):
    """Raised from ``receive`` when a streamed body passes the limit.

    An ``HTTPException`` so that FastAPI's body parsing lets it through (it turns any other
    error into a 400) and the problem-details handler answers 413; outside FastAPI routes
    `BodySizeLimitMiddleware` catches it itself.
    """

    def __init__(self, max_body_size: int) -> None:
        detail = f"The request body is larger than {max_body_size} bytes."
        super().__init__(status_code=413, detail=detail)
