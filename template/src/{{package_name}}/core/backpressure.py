"""Backpressure: a worker that has enough requests in flight answers new ones 503 at once.

Without a limit, a worker past its capacity keeps accepting: every request waits behind
all the others, the latency of all of them grows with the queue, and clients time out on
requests the server still finishes for nobody. With one, the requests past
``MAX_CONCURRENT_REQUESTS`` get a 503 problem with ``Retry-After`` in microseconds, the
ones inside keep their latency, and a load balancer or client retries elsewhere or later.

A pure ASGI layer rather than uvicorn's ``limit_concurrency``: that option counts open
connections (an idle keep-alive connection takes a place as surely as a busy one, so a
thousand idle clients would lock everyone out), answers in plain text without
``Retry-After``, and exists in uvicorn only; this layer counts the requests the
application is working on, answers with the same problem details as every other error,
and behaves the same under every server `core/serving.py` can run.
"""

from collections.abc import Iterable

from starlette.types import ASGIApp, Receive, Scope, Send

from .errors import problem_response

RETRY_AFTER_SECONDS = "1"


class ConcurrencyLimitMiddleware:
    """Serve at most ``limit`` HTTP requests at once; answer the others 503 + Retry-After.

    Paths in ``exempt`` are never refused nor counted: the health probes must keep
    answering under load (an orchestrator would otherwise restart a busy but healthy
    worker), and so must the metrics that show the overload. The count is a plain integer:
    one event loop runs every request of a worker, so nothing else can change it between a
    check and an increment.
    """

    def __init__(self, app: ASGIApp, *, limit: int, exempt: Iterable[str] = ()) -> None:
        self.app = app
        self.limit = limit
        self.exempt = frozenset(exempt)
        self.in_flight = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self.exempt:
            await self.app(scope, receive, send)
            return
        if self.in_flight >= self.limit:
            response = problem_response(
                503,
                "The service is at capacity; retry shortly.",
                scope=scope,
                headers={"Retry-After": RETRY_AFTER_SECONDS},
            )
            await response(scope, receive, send)
            return
        self.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1
