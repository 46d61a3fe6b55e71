"""Edge response cache: answer hot public GETs before routing, from the in-process cache.

A cache hit inside an endpoint still pays for routing, dependency resolution and the
response machinery: on this kind of machine a bare FastAPI endpoint answers ~15k requests/s
while a raw ASGI app sending stored bytes answers ~47k. This pure-ASGI layer sits in front
of the application and sends a stored response (status, headers, body) directly.

What it caches: ``GET`` 200 responses under the configured path prefixes, for requests with
no ``Authorization`` or ``Cookie`` header (those may vary per user), unless the response
streams (no ``Content-Length``), sets a cookie, says ``private``/``no-store``, varies on
anything but ``Accept-Encoding``, or is larger than ``max_body``: those pass untouched.

Validation: every stored response carries a strong ``ETag`` computed from the body with
BLAKE2b (stable across processes and restarts, unlike Python's ``hash()``), and a request
whose ``If-None-Match`` matches gets ``304 Not Modified`` without a body.

Invalidation: a prefix such as ``/api/posts`` maps to the tag ``posts``. Any successful
write (``POST``/``PUT``/``PATCH``/``DELETE``, on any path) invalidates every such tag through
the data cache: reads join resources (a post shows its author's name and its comment
count), so a write under ``/api/users`` can change a ``/api/posts`` response. This happens
when the response starts and again after the application has returned (after any
request-scoped transaction has committed); it reaches every instance, and the data entries
tagged ``posts`` too. A response computed while any invalidation happened is not stored
(``Cache.epoch``), so a read racing a write cannot re-insert the old state.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from hashlib import blake2b

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .cache import Cache

CACHEABLE_METHODS = frozenset({"GET", "HEAD"})
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
PERSONAL_REQUEST_HEADERS = frozenset({b"authorization", b"cookie"})
# Set per response by the server, or recomputed when the stored response is sent.
UNSTORED_RESPONSE_HEADERS = frozenset({b"date", b"server", b"etag", b"x-cache"})
# Sent back with a 304 (RFC 9110 section 15.4.5).
NOT_MODIFIED_HEADERS = frozenset({b"cache-control", b"content-location", b"expires", b"vary"})


@dataclass(frozen=True, slots=True)
class StoredResponse:
    status: int
    headers: tuple[tuple[bytes, bytes], ...]
    body: bytes
    etag: bytes


def strong_etag(body: bytes) -> bytes:
    return b'"' + blake2b(body, digest_size=16).hexdigest().encode() + b'"'


def etag_matches(if_none_match: bytes, etag: bytes) -> bool:
    """``If-None-Match`` uses the weak comparison: ``W/"x"`` matches ``"x"``."""
    if if_none_match.strip() == b"*":
        return True
    candidates = (tag.strip().removeprefix(b"W/") for tag in if_none_match.split(b","))
    return etag in candidates


def _cacheable_response(message: Message) -> bool:
    if message["status"] != 200:
        return False
    headers = message.get("headers", ())
    if not any(name == b"content-length" for name, _ in headers):
        return False
    for name, value in headers:
        if name == b"set-cookie":
            return False
        if name == b"cache-control" and (b"private" in value or b"no-store" in value):
            return False
        if name == b"vary" and value.lower().strip() != b"accept-encoding":
            return False
    return True


def _cache_of(scope: Scope) -> Cache | None:
    cache: Cache | None = getattr(scope["app"].state, "cache", None)
    return cache if cache is not None and cache.enabled else None


class EdgeCache:
    """Pure ASGI middleware; reads the ``Cache`` from ``app.state.cache`` per request."""

    def __init__(
        self, app: ASGIApp, *, paths: Sequence[str], ttl: float, max_body: int = 256 * 1024
    ) -> None:
        self.app = app
        self.ttl = ttl
        self.max_body = max_body
        self._prefixes = [(p.rstrip("/"), p.rstrip("/").rsplit("/", 1)[-1]) for p in paths]
        self._tags = tuple({tag for _, tag in self._prefixes})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method = scope["method"]
        if method in WRITE_METHODS:
            cache = _cache_of(scope)
            if cache is None:
                await self.app(scope, receive, send)
            else:
                await self._write(cache, scope, receive, send)
            return
        # The path first: most requests are not cached here and need nothing else.
        tag = self._tag_for(scope["path"])
        cache = _cache_of(scope) if tag is not None else None
        if tag is None or cache is None:
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        if method not in CACHEABLE_METHODS or PERSONAL_REQUEST_HEADERS & headers.keys():
            await self.app(scope, receive, send)
            return
        key = self._key(scope, headers)
        stored: StoredResponse | None = cache.responses.get(key)
        if stored is not None:
            await self._send_stored(stored, headers, method, send, b"hit")
            return
        if method == "HEAD":
            await self.app(scope, receive, send)
            return
        await self._fill(cache, tag, key, headers, scope, receive, send)

    def _tag_for(self, path: str) -> str | None:
        for prefix, tag in self._prefixes:
            if path == prefix or path.startswith(prefix + "/"):
                return tag
        return None

    @staticmethod
    def _key(scope: Scope, headers: dict[bytes, bytes]) -> str:
        encoding = "gzip" if b"gzip" in headers.get(b"accept-encoding", b"") else "identity"
        query = scope["query_string"].decode("latin-1")
        return f"{scope['path']}?{query}|{encoding}"

    @staticmethod
    async def _send_stored(
        stored: StoredResponse,
        request_headers: dict[bytes, bytes],
        method: str,
        send: Send,
        state: bytes,
    ) -> None:
        if_none_match = request_headers.get(b"if-none-match")
        if if_none_match is not None and etag_matches(if_none_match, stored.etag):
            headers = [(n, v) for n, v in stored.headers if n in NOT_MODIFIED_HEADERS]
            headers += [(b"etag", stored.etag), (b"x-cache", state)]
            await send({"type": "http.response.start", "status": 304, "headers": headers})
            await send({"type": "http.response.body", "body": b""})
            return
        headers = [*stored.headers, (b"etag", stored.etag), (b"x-cache", state)]
        await send({"type": "http.response.start", "status": stored.status, "headers": headers})
        body = b"" if method == "HEAD" else stored.body
        await send({"type": "http.response.body", "body": body})

    async def _fill(
        self,
        cache: Cache,
        tag: str,
        key: str,
        request_headers: dict[bytes, bytes],
        scope: Scope,
        receive: Receive,
        send: Send,
    ) -> None:
        epoch = cache.epoch
        start: Message | None = None
        chunks: list[bytes] = []
        size = 0
        passthrough = False

        async def capture(message: Message) -> None:
            nonlocal start, size, passthrough
            if passthrough:
                await send(message)
            elif message["type"] == "http.response.start":
                start = message
                if not _cacheable_response(message):
                    passthrough = True
                    await send(message)
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))
                size += len(chunks[-1])
                if size > self.max_body:
                    passthrough = True
                    await send(start)
                    await send({**message, "body": b"".join(chunks)})
                elif not message.get("more_body", False):
                    stored = self._store(cache, tag, key, epoch, start, b"".join(chunks))
                    await self._send_stored(stored, request_headers, "GET", send, b"miss")
            else:
                await send(message)

        await self.app(scope, receive, capture)

    def _store(
        self, cache: Cache, tag: str, key: str, epoch: int, start: Message | None, body: bytes
    ) -> StoredResponse:
        assert start is not None
        headers = tuple(
            (name, value)
            for name, value in start.get("headers", ())
            if name not in UNSTORED_RESPONSE_HEADERS
        )
        stored = StoredResponse(start["status"], headers, body, strong_etag(body))
        if cache.epoch == epoch:
            cache.responses.set(key, stored, cache.ttl.jittered(self.ttl), (tag,))
        return stored

    async def _write(self, cache: Cache, scope: Scope, receive: Receive, send: Send) -> None:
        succeeded = False

        async def watch(message: Message) -> None:
            nonlocal succeeded
            if message["type"] == "http.response.start" and 200 <= message["status"] < 300:
                succeeded = True
                await cache.invalidate_tags(*self._tags)
            await send(message)

        await self.app(scope, receive, watch)
        if succeeded:
            await cache.invalidate_tags(*self._tags)
