"""Single-flight: N concurrent misses on one key run the loader once.

A cold or just-invalidated hot key would otherwise send every concurrent request to the
database at once (a cache-miss storm). Here the first caller starts the load as a task and
every caller, the first included, awaits that same task, so they all get its result the
moment it exists: there is no fixed waiting window to tune.

On Python 3.12 and later the task starts eagerly: it runs at once, in the first caller's
turn, up to its first real wait. A task started the ordinary way (all 3.11 offers) first
waits for a turn of the event loop, and under load a turn waits for every other request
that is ready. A load that never waits (SQLite, which runs on the loop's own thread) is then
done before ``do`` returns. The interpreter decides, not the project's minimum version: a
project kept installable on 3.11 still gets eager starts where it runs on a later Python.

Why ``asyncio.shield``: a caller whose request is cancelled (client gone, timeout) must not
cancel the load the others are waiting for. Each caller awaits a shield around the shared
task, so cancelling a caller only stops that caller's wait.

Errors are not remembered: the flight is forgotten as soon as it finishes, so an exception
reaches every caller of that flight and the next call starts a fresh load.

Loaders must not borrow resources owned by one request (its database session): the load can
outlive the request that started it. Open what the load needs inside the loader.
"""

import asyncio
from collections.abc import Callable, Coroutine, Hashable
from typing import Any

Loader = Callable[[], Coroutine[Any, Any, Any]]
# Eager tasks came with Python 3.12, and `asyncio.eager_task_factory` with them.
EAGER_START = hasattr(asyncio, "eager_task_factory")


class SingleFlight:
    """Coalesce concurrent calls per key; ``coalesced`` counts the calls that joined a flight."""

    def __init__(self) -> None:
        self._flights: dict[Hashable, asyncio.Task[Any]] = {}
        self.coalesced = 0

    def __len__(self) -> int:
        return len(self._flights)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._flights

    async def do(self, key: Hashable, load: Loader) -> Any:
        flight = self._flights.get(key)
        if flight is None:
            flight = _start(load())
            if not flight.done():  # one already done has nobody to wait for it
                self._flights[key] = flight
                flight.add_done_callback(lambda done: self._land(key, done))
        else:
            self.coalesced += 1
        return await asyncio.shield(flight)

    def forget(self, key: Hashable) -> None:
        """Let the next call start a new load, e.g. after the key was invalidated.

        Callers already waiting keep the flight they joined; it no longer takes newcomers.
        """
        self._flights.pop(key, None)

    def forget_all(self) -> None:
        """`forget` every flight: after an invalidation whose effect on them is unknown."""
        self._flights.clear()

    def _land(self, key: Hashable, done: asyncio.Task[Any]) -> None:
        if self._flights.get(key) is done:
            del self._flights[key]
        if not done.cancelled():
            # Mark the exception as retrieved: when every waiter was cancelled nobody else
            # reads it, and asyncio would log "exception was never retrieved".
            done.exception()


def _start(load: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
    if EAGER_START:
        return asyncio.Task(load, loop=asyncio.get_running_loop(), eager_start=True)
    return asyncio.ensure_future(load)
