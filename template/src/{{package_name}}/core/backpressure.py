"""Backpressure: a worker works on a bounded number of requests at once, lets the next ones
wait their turn in arrival order, and answers 503 at once past a bound on the queue.

One event loop runs every request of a worker, and it takes turns: each turn runs a step of
every request that is ready. With a thousand requests in the worker, a turn lasts as long
as a thousand steps, and a request that needs several steps (a cache miss: a connection
from the pool, the query, the response) waits a whole turn for each of them, while every
request for the same data waits for that one. At most ``MAX_ACTIVE_REQUESTS`` at once
keeps turns short: a request waits once, in the queue, then runs its steps in short turns,
so the slow tail of multi-step requests shrinks while the average stays what the CPU
allows. (``asyncio.Semaphore`` hands out its places in the order they were asked for.)

A request gives its place back as soon as its response starts, so a long streamed body
(an export read by a slow client) does not keep others waiting. The price: until then it
holds its place while it waits on anything, so a service whose requests wait long on
something outside (another HTTP API) needs a larger ``MAX_ACTIVE_REQUESTS``, or 0 for no
queue.

Past ``MAX_CONCURRENT_REQUESTS`` requests in the worker (working or waiting), new ones get
a 503 problem with ``Retry-After`` in microseconds: the queue, and with it the latency of
everyone in it, stops growing, and a load balancer or client retries elsewhere or later.

A pure ASGI layer rather than uvicorn's ``limit_concurrency``: that option counts open
connections (an idle keep-alive connection takes a place as surely as a busy one, so a
thousand idle clients would lock everyone out), answers in plain text without
``Retry-After``, and exists in uvicorn only; this layer counts the requests the
application is working on, answers with the same problem details as every other error,
and behaves the same under every server `core/serving.py` can run.
"""

import asyncio
from collections.abc import Iterable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .errors import problem_response

RETRY_AFTER_SECONDS = "1"


class ConcurrencyLimitMiddleware:
    """Work on at most ``active`` HTTP requests at once, the next ones waiting in arrival
    order; answer 503 + Retry-After past ``limit`` requests in all. 0 turns either off.

    Paths in ``exempt`` are never refused, queued nor counted: the health probes must keep
    answering under load (an orchestrator would otherwise restart a busy but healthy
    worker), and so must the metrics that show the overload. The count is a plain integer:
    one event loop runs every request of a worker, so nothing else can change it between a
    check and an increment.
    """

    def __init__(
        self, app: ASGIApp, *, limit: int, active: int = 0, exempt: Iterable[str] = ()
    ) -> None:
        self.app = app
        self.limit = limit
        self.exempt = frozenset(exempt)
        self.in_flight = 0
        self.turns = asyncio.Semaphore(active) if active else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self.exempt:
            await self.app(scope, receive, send)
            return
        if self.limit and self.in_flight >= self.limit:
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
            if self.turns is None:
                await self.app(scope, receive, send)
            else:
                await self._take_turn(scope, receive, send, self.turns)
        finally:
            self.in_flight -= 1

    async def _take_turn(
        self, scope: Scope, receive: Receive, send: Send, turns: asyncio.Semaphore
    ) -> None:
        """Run the request once a place is free; give it back when the response starts."""
        await turns.acquire()
        holding = True

        def give_back() -> None:
            nonlocal holding
            if holding:
                holding = False
                turns.release()

        async def send_and_give_back(message: Message) -> None:
            if message["type"] == "http.response.start":
                give_back()
            await send(message)

        try:
            await self.app(scope, receive, send_and_give_back)
        finally:
            give_back()
