"""The in-process cache's lifetime: opening it, and the warning when it cannot be shared."""

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from ..settings import Settings
from .cache import Cache

log = logging.getLogger(__name__)


@asynccontextmanager
async def open_cache(settings: Settings) -> AsyncIterator[Cache]:
    """The in-process cache: nothing to connect or close, shaped like the variant with an L2.

    It sees only the writes of its own process, so with several workers or replicas a read
    may show the old value after another process's write: each worker says so as it starts,
    for settings that are easy to raise without knowing it.
    """
    processes = settings.workers * settings.replicas
    if settings.cache_enabled and processes > 1:
        log.warning(
            "%d workers x %d replicas with the in-process cache: after a write, the other "
            "processes may serve the old value until their entry expires (up to "
            'CACHE_TTL_MAX_SECONDS %ss); see "With several workers" in the README',
            settings.workers,
            settings.replicas,
            settings.cache_ttl_max_seconds,
        )
    yield Cache.from_settings(settings)
