"""Edge response cache: answer repeated public GETs before routing, from the in-process cache.

A cache hit inside an endpoint still pays for routing, dependency resolution and the
response machinery. This pure-ASGI layer sits in front of the application and sends a
stored response (status, headers, body) directly.

What it stores: responses whose endpoint declared the tags of the data they show, with
``cached_response`` (every cached read of the example domains does). A ``GET`` 200 with
such tags is stored, for requests with no ``Authorization`` or ``Cookie`` header (those
may vary per user), unless the response streams (no ``Content-Length``), sets a cookie,
says ``private``/``no-store``, varies on anything but ``Accept-Encoding``, or is larger
than ``max_body``: those pass untouched, like every response without tags.

Validation: every stored response carries a strong ``ETag`` computed from the body with
BLAKE2b (stable across processes and restarts, unlike Python's ``hash()``), and a request
whose ``If-None-Match`` matches gets ``304 Not Modified`` without a body.

Invalidation: a stored response carries the tags its endpoint declared, in the same cache
as the data (``Cache.responses``), so the write that invalidates ``post:7`` drops the
cached post, the cached list pages showing it and their stored responses together, in
every instance. A response computed while one of its tags was invalidated is not stored
(a ``Fence``), so a read racing a write cannot store the old state.

Concurrent misses on one key: the first runs the application and the others wait for the
response it computes, then send it as a hit. Without that, every request for a hot post
that arrives while its response is being recomputed (after a write invalidated it) pays
for routing, the handler and compression, though the data cache below loads it only once.
(Not ``SingleFlight``: the load here is the first request itself, run with its own
``receive`` and ``send``, not a task the others could await.) A response spoiled by a
write is not stored, but the requests that were already waiting when the write's
invalidation arrived still get it: they ran concurrently with the write, as a request that
hit the cache a moment earlier did. Those that came after it run the application
themselves, and the data cache below loads the new state once for them. (Waiting for a
new fill instead can keep them waiting fill after fill while writes keep spoiling a hot
page.) A response that is never stored (no tags, not cacheable, too large) releases its
waiters to run the application themselves too, and its key is remembered for a while so
that its requests stop waiting for each other.
"""

import asyncio
from dataclasses import dataclass
from hashlib import blake2b

from fastapi import Request, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .cache import Cache, Cached, MemoryCache

CACHEABLE_METHODS = frozenset({"GET", "HEAD"})
# Where an endpoint leaves the tags of its response, in the request's scope["state"].
TAGS_STATE = "cache_tags"
PERSONAL_REQUEST_HEADERS = frozenset({b"authorization", b"cookie"})
# Set per response by the server, or recomputed when the stored response is sent.
UNSTORED_RESPONSE_HEADERS = frozenset({b"date", b"server", b"etag", b"x-cache"})
# Sent back with a 304 (RFC 9110 section 15.4.5).
NOT_MODIFIED_HEADERS = frozenset({b"cache-control", b"content-location", b"expires", b"vary"})
# How many keys whose response was not stored are remembered, so that their concurrent
# requests run side by side instead of waiting for each other.
UNSTORED_KEYS = 1024


@dataclass(frozen=True, slots=True)
class StoredResponse:
    status: int
    headers: tuple[tuple[bytes, bytes], ...]
    body: bytes
    etag: bytes


@dataclass(frozen=True, slots=True)
class Filled:
    """What a fill computed, and the number of the first invalidation that spoiled it."""

    response: StoredResponse
    spoiled_at: int | None


def strong_etag(body: bytes) -> bytes:
    return b'"' + blake2b(body, digest_size=16).hexdigest().encode() + b'"'


def etag_matches(if_none_match: bytes, etag: bytes) -> bool:
    """``If-None-Match`` uses the weak comparison: ``W/"x"`` matches ``"x"``."""
    if if_none_match.strip() == b"*":
        return True
    candidates = (tag.strip().removeprefix(b"W/") for tag in if_none_match.split(b","))
    return etag in candidates


def cached_response(request: Request, read: Cached) -> Response:
    """The JSON of a cached read; its tags let the edge cache store the response as well."""
    setattr(request.state, TAGS_STATE, read.tags)
    return Response(read.body, media_type="application/json")


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

    def __init__(self, app: ASGIApp, *, ttl: float, max_body: int = 256 * 1024) -> None:
        self.app = app
        self.ttl = ttl
        self.max_body = max_body
        # key -> what its running fill computes (None: a response that is not stored).
        self._fills: dict[str, asyncio.Future[Filled | None]] = {}
        self._unstored = MemoryCache(UNSTORED_KEYS)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in CACHEABLE_METHODS:
            await self.app(scope, receive, send)
            return
        cache = _cache_of(scope)
        headers = dict(scope["headers"])
        if cache is None or PERSONAL_REQUEST_HEADERS & headers.keys():
            await self.app(scope, receive, send)
            return
        key = self._key(scope, headers)
        stored: StoredResponse | None = cache.responses.get(key)
        if stored is not None:
            await self._send_stored(stored, headers, scope["method"], send, b"hit")
            return
        if scope["method"] == "HEAD":
            await self.app(scope, receive, send)
            return
        fill = self._fills.get(key)
        if fill is None:
            await self._fill(cache, key, headers, scope, receive, send)
            return
        cache.stats.coalesced += 1
        arrived = cache.generation
        # The shield keeps a waiter that is cancelled (client gone) from cancelling the
        # future the other waiters share.
        filled = await asyncio.shield(fill)
        if filled is not None and (filled.spoiled_at is None or filled.spoiled_at > arrived):
            await self._send_stored(filled.response, headers, "GET", send, b"hit")
        else:
            # Not stored, or a write changed the data before this request arrived.
            await self.app(scope, receive, send)

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
        key: str,
        request_headers: dict[bytes, bytes],
        scope: Scope,
        receive: Receive,
        send: Send,
    ) -> None:
        start: Message | None = None
        tags: frozenset[str] | None = None
        chunks: list[bytes] = []
        size = 0
        passthrough = False
        fill: asyncio.Future[Filled | None] = asyncio.get_running_loop().create_future()
        if key not in self._unstored:
            self._fills[key] = fill

        def release(filled: Filled | None) -> None:
            if not fill.done():
                if self._fills.get(key) is fill:
                    del self._fills[key]
                fill.set_result(filled)

        def pass_through() -> None:
            nonlocal passthrough
            passthrough = True
            self._unstored.set(key, True, self.ttl)
            release(None)

        async def capture(message: Message) -> None:
            nonlocal start, tags, size, passthrough
            if passthrough:
                await send(message)
            elif message["type"] == "http.response.start":
                start = message
                tags = scope.get("state", {}).get(TAGS_STATE)
                if tags is None or not _cacheable_response(message):
                    pass_through()
                    await send(message)
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))
                size += len(chunks[-1])
                if size > self.max_body:
                    pass_through()
                    await send(start)
                    await send({**message, "body": b"".join(chunks)})
                elif not message.get("more_body", False):
                    assert start is not None
                    assert tags is not None
                    stored = self._stored(start, b"".join(chunks))
                    spoiled_at = fence.spoiled_at(tags)
                    if spoiled_at is None:
                        cache.responses.set(key, stored, cache.ttl.jittered(self.ttl), tags)
                        self._unstored.delete(key)
                    release(Filled(stored, spoiled_at))
                    await self._send_stored(stored, request_headers, "GET", send, b"miss")
            else:
                await send(message)

        try:
            with cache.fenced() as fence:
                await self.app(scope, receive, capture)
        finally:
            release(None)

    @staticmethod
    def _stored(start: Message, body: bytes) -> StoredResponse:
        headers = tuple(
            (name, value)
            for name, value in start.get("headers", ())
            if name not in UNSTORED_RESPONSE_HEADERS
        )
        return StoredResponse(start["status"], headers, body, strong_etag(body))
