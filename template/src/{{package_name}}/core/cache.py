"""The cache: a bounded in-process level (L1), an optional shared level (L2) and the rules
that keep them correct.

Why hand-written: the libraries we surveyed (cashews, aiocache, fastapi-cache2) each lack
one of bounded L1 + single-flight + invalidation by declared dependencies across instances
+ fail-open, and this module is short enough to read in ten minutes.

How invalidation works: every cached read is a ``Cached`` (its encoded JSON and the tags of
the data it shows, such as ``post:7`` and ``user:3``), and every write names the tags of
the data it changed (``invalidate_on_commit`` in ``core/deps.py``). After the write's
transaction commits, exactly the entries carrying one of those tags are dropped, in this
process, in L2 and in every other instance. Domain code declares both sides next to its
queries (``posts/service.py`` and its neighbours), and the edge response cache stores
responses under the tags of the read that produced them, so one mechanism serves both.

- ``MemoryCache`` is the L1: a dict in LRU order (``OrderedDict``: O(1) get, set, evict),
  bounded by entry count, with a TTL per entry and an index from tag to keys. Expired
  entries are dropped when read and by small sampled sweeps, never by a full scan that
  would stall the event loop. When it is full, a new key only displaces the least recently
  used one if it has been read more often (TinyLFU-style admission): one-off reads stop
  flushing out the hot keys.
- Values are immutable (``Cached`` for data, frozen responses for the edge cache), so a
  hit is handed out as is: no copy, no re-serialization.
- ``TTLPolicy`` chooses each entry's TTL from how often the key is read and how often it is
  invalidated (the adaptive rule below), clamped to bounds and jittered so entries filled
  together do not all expire together.
- ``Cache`` is what handlers use (``CacheDep``): ``get_or_load`` coalesces concurrent misses
  (``SingleFlight``), reads through L1 then L2, and refuses to store a value computed while
  one of its own tags was invalidated (a ``Fence``).
- ``stats`` holds plain integer counters per layer; the metrics module reads them at scrape
  time, so the cache imports nothing from it.
"""

import random
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from itertools import islice
from typing import Annotated, Any, Protocol

from fastapi import Depends, Request
from pydantic_core import to_json

from ..settings import Settings
from .coalesce import SingleFlight

Clock = Callable[[], float]


@dataclass(slots=True)
class LayerStats:
    hits: int = 0
    misses: int = 0
    evictions: int = 0
    expirations: int = 0
    errors: int = 0


@dataclass(slots=True)
class CacheStats:
    """Monotonic counters, read by the metrics collector (``cache_hits_total{layer}`` ...)."""

    l1: LayerStats = field(default_factory=LayerStats)
    l2: LayerStats = field(default_factory=LayerStats)
    edge: LayerStats = field(default_factory=LayerStats)
    promotions: int = 0
    loads: int = 0
    coalesced: int = 0
    invalidations: int = 0
    flushes: int = 0

    def layers(self) -> dict[str, LayerStats]:
        return {"l1": self.l1, "l2": self.l2, "edge": self.edge}


class _Entry:
    __slots__ = ("expires_at", "tags", "value")

    def __init__(self, value: Any, expires_at: float, tags: frozenset[str]) -> None:
        self.value = value
        self.expires_at = expires_at
        self.tags = tags


class MemoryCache:
    """Bounded LRU map with a TTL per entry and a tag index for group invalidation.

    Every operation is O(1) (O(tags) for the index). Sweeps look at the ``sweep_sample``
    least recently used entries every ``sweep_every`` writes: expired entries collect at
    that end, and the cost per write stays constant whatever the size. With ``admit``, a
    new key is stored in a full cache only if ``admit(new_key, least_recently_used_key)``.
    """

    def __init__(
        self,
        max_entries: int,
        *,
        stats: LayerStats | None = None,
        clock: Clock = time.monotonic,
        sweep_every: int = 64,
        sweep_sample: int = 32,
        admit: Callable[[str, str], bool] | None = None,
    ) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self.max_entries = max_entries
        self.stats = stats or LayerStats()
        self._clock = clock
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._tags: dict[str, set[str]] = {}
        self._sweep_every = sweep_every
        self._sweep_sample = sweep_sample
        self._admit = admit
        self._writes = 0

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: str) -> bool:
        entry = self._entries.get(key)
        return entry is not None and entry.expires_at > self._clock()

    def get(self, key: str) -> Any | None:
        entry = self._entries.get(key)
        if entry is None:
            self.stats.misses += 1
            return None
        if entry.expires_at <= self._clock():
            self._remove(key)
            self.stats.expirations += 1
            self.stats.misses += 1
            return None
        self._entries.move_to_end(key)
        self.stats.hits += 1
        return entry.value

    def remaining(self, key: str) -> float | None:
        """Seconds until ``key`` expires, without touching its LRU position; None if absent."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        left = entry.expires_at - self._clock()
        return left if left > 0 else None

    def set(self, key: str, value: Any, ttl: float, tags: Iterable[str] = ()) -> None:
        if ttl <= 0:
            return
        if key in self._entries:
            self._remove(key)
        elif len(self._entries) >= self.max_entries and not self._admits(key):
            return
        entry = _Entry(value, self._clock() + ttl, frozenset(tags))
        self._entries[key] = entry
        for tag in entry.tags:
            self._tags.setdefault(tag, set()).add(key)
        while len(self._entries) > self.max_entries:
            oldest = next(iter(self._entries))
            self._remove(oldest)
            self.stats.evictions += 1
        self._writes += 1
        if self._writes % self._sweep_every == 0:
            self.sweep()

    def delete(self, key: str) -> bool:
        if key not in self._entries:
            return False
        self._remove(key)
        return True

    def delete_tag(self, tag: str) -> list[str]:
        """Remove every entry carrying ``tag``; returns their keys."""
        keys = list(self._tags.get(tag, ()))
        for key in keys:
            self._remove(key)
        return keys

    def clear(self) -> None:
        self._entries.clear()
        self._tags.clear()

    def sweep(self) -> int:
        """Drop expired entries among the least recently used ``sweep_sample``."""
        now = self._clock()
        expired = [
            key
            for key, entry in islice(self._entries.items(), self._sweep_sample)
            if entry.expires_at <= now
        ]
        for key in expired:
            self._remove(key)
        self.stats.expirations += len(expired)
        return len(expired)

    def _admits(self, key: str) -> bool:
        return self._admit is None or self._admit(key, next(iter(self._entries)))

    def _remove(self, key: str) -> None:
        entry = self._entries.pop(key)
        for tag in entry.tags:
            keys = self._tags[tag]
            keys.discard(key)
            if not keys:
                del self._tags[tag]


class TTLPolicy:
    """Choose an entry's TTL from the key's read frequency and write volatility.

    The rule (SPEC §4): more than 100 reads with volatility (writes per read) below 0.1 ->
    1 hour; more than 10 reads -> 10 minutes; otherwise 1 minute. Hot, stable keys stay long;
    keys that change often or are rarely read stay short. The result is jittered by
    +-``jitter`` and clamped to ``[minimum, maximum]``. Counts live in a bounded LRU map and
    are halved once a key reaches 1,024 events, so they follow recent behaviour; the L1
    uses them for admission too. With ``adaptive=False`` every entry gets ``base``,
    jittered and clamped.
    """

    DECAY_AT = 1024

    def __init__(
        self,
        *,
        base: float,
        minimum: float,
        maximum: float,
        adaptive: bool = True,
        jitter: float = 0.1,
        max_keys: int = 20_000,
    ) -> None:
        if not 0 < minimum <= maximum:
            raise ValueError("TTL bounds must satisfy 0 < minimum <= maximum")
        self.base = base
        self.minimum = minimum
        self.maximum = maximum
        self.adaptive = adaptive
        self.jitter = jitter
        self._max_keys = max_keys
        self._counts: OrderedDict[str, list[int]] = OrderedDict()

    def record_read(self, key: str) -> None:
        self._count(key, 0)

    def record_write(self, key: str) -> None:
        self._count(key, 1)

    def read_more_often(self, key: str, than: str) -> bool:
        """The L1 admission rule: is ``key`` read more often than the entry it would evict?"""
        return self._reads(key) > self._reads(than)

    def _reads(self, key: str) -> int:
        counts = self._counts.get(key)
        return counts[0] if counts else 0

    def seconds(self, key: str) -> float:
        if self.adaptive:
            reads, writes = self._counts.get(key, (0, 0))
            if reads > 100 and writes / reads < 0.1:
                seconds = 3600.0
            elif reads > 10:
                seconds = 600.0
            else:
                seconds = 60.0
        else:
            seconds = self.base
        return self.jittered(seconds)

    def jittered(self, seconds: float) -> float:
        seconds *= random.uniform(1 - self.jitter, 1 + self.jitter)
        return min(max(seconds, self.minimum), self.maximum)

    def _count(self, key: str, index: int) -> None:
        counts = self._counts.get(key)
        if counts is None:
            counts = self._counts[key] = [0, 0]
            if len(self._counts) > self._max_keys:
                self._counts.popitem(last=False)
        else:
            self._counts.move_to_end(key)
        counts[index] += 1
        if counts[0] + counts[1] >= self.DECAY_AT:
            counts[0] //= 2
            counts[1] //= 2


@dataclass(frozen=True, slots=True)
class Cached:
    """A cached read: its encoded body, and the tags of the data it shows.

    The tags are the read's declared dependencies (``post:7``, ``user:3``, ...): a write
    that changes one of them invalidates every entry carrying it, in the data cache and in
    the edge response cache alike. Tags are words without spaces.
    """

    body: bytes
    tags: frozenset[str]


def encode(value: Any) -> bytes:
    """JSON exactly as FastAPI sends a response model: Pydantic's own serializer."""
    return to_json(value)


def cached(value: Any, tags: Iterable[str]) -> Cached:
    """A read to cache: ``value`` (a response model) encoded once, with its tags."""
    return Cached(encode(value), frozenset(tags))


@dataclass(frozen=True, slots=True)
class L2Read:
    """What an L2 lookup found: the value (None on a miss) and its remaining TTL in seconds.

    ``fence`` marks when the lookup happened. A ``set`` given it is dropped if any instance
    invalidated one of the value's tags since: a value loaded after a miss may predate that
    invalidation.
    """

    value: Cached | None
    ttl: float = 0.0
    fence: object = None


class SecondLevel(Protocol):
    """A shared cache level (L2). Implementations fail open: errors become misses."""

    async def get(self, key: str) -> L2Read: ...

    async def set(self, key: str, value: Cached, ttl: float, fence: object = None) -> None: ...

    async def invalidate(self, tags: Sequence[str]) -> None:
        """Delete the entries carrying ``tags``, and tell the other instances."""
        ...


class Fence:
    """Collects the tags invalidated while a value is computed, and when.

    A value computed across an invalidation of one of its own tags may show the data from
    before the change; storing it would bring the old state back, so it is not stored.
    Unrelated invalidations do not spoil it.

    Invalidations are numbered (``Cache.generation``), so a request that waited for the
    value can tell whether the change came before it arrived (it must not get the value)
    or while it was waiting (it may: it ran concurrently with the write).
    """

    __slots__ = ("flushed_at", "invalidated")

    def __init__(self) -> None:
        # tag -> the number of its first invalidation since the fence opened
        self.invalidated: dict[str, int] = {}
        self.flushed_at: int | None = None

    def spoils(self, tags: frozenset[str]) -> bool:
        return self.spoiled_at(tags) is not None

    def spoiled_at(self, tags: frozenset[str]) -> int | None:
        """The number of the first invalidation that spoils a value with ``tags``, if any."""
        if not self.invalidated and self.flushed_at is None:
            return None
        numbers = [self.invalidated[tag] for tag in tags if tag in self.invalidated]
        if self.flushed_at is not None:
            numbers.append(self.flushed_at)
        return min(numbers, default=None)

    def invalidate(self, tags: Iterable[str], number: int) -> None:
        for tag in tags:
            self.invalidated.setdefault(tag, number)

    def flush(self, number: int) -> None:
        if self.flushed_at is None:
            self.flushed_at = number


class Cache:
    """Read-through cache of encoded reads with single-flight loads and tag invalidation.

    ``responses`` is a second L1 area used by the edge response cache; it is invalidated by
    the same tags, so ``invalidate("post:7")`` drops the cached post and every cached
    response that shows it.

    Other in-process maps that must forget what this cache forgets are ``attach``-ed: they
    ride the same invalidation path (across instances, with a shared L2) instead of
    inventing a channel of their own.
    """

    def __init__(
        self,
        *,
        l1: MemoryCache,
        responses: MemoryCache,
        ttl: TTLPolicy,
        l2: SecondLevel | None = None,
        l2_ttl_factor: float = 2.0,
        enabled: bool = True,
        stats: CacheStats | None = None,
    ) -> None:
        self.stats = stats or CacheStats(l1=l1.stats, edge=responses.stats)
        self.l1 = l1
        self.responses = responses
        self.ttl = ttl
        self.l2 = l2
        self.l2_ttl_factor = l2_ttl_factor
        self.enabled = enabled
        # Set by the L2 while other instances' invalidations cannot arrive: L1 entries
        # then live at most this long.
        self.degraded_ttl: float | None = None
        # How many invalidations and flushes this process has applied: their numbers.
        self.generation = 0
        self._flights = SingleFlight()
        self._fences: set[Fence] = set()
        self._attached: list[MemoryCache] = []

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        l2: SecondLevel | None = None,
        l2_ttl_factor: float = 2.0,
        stats: CacheStats | None = None,
    ) -> "Cache":
        stats = stats or CacheStats()
        ttl = TTLPolicy(
            base=settings.cache_ttl_seconds,
            minimum=settings.cache_ttl_min_seconds,
            maximum=settings.cache_ttl_max_seconds,
            adaptive=settings.cache_adaptive_ttl,
            max_keys=4 * settings.cache_l1_max_entries,
        )
        l1 = MemoryCache(settings.cache_l1_max_entries, stats=stats.l1, admit=ttl.read_more_often)
        return cls(
            l1=l1,
            responses=MemoryCache(settings.cache_edge_max_entries, stats=stats.edge),
            ttl=ttl,
            l2=l2,
            l2_ttl_factor=l2_ttl_factor,
            enabled=settings.cache_enabled,
            stats=stats,
        )

    async def get(self, key: str) -> Cached | None:
        """L1, then L2 (promoting a hit into L1); None on a miss in both."""
        if not self.enabled:
            return None
        self.ttl.record_read(key)
        value: Cached | None = self.l1.get(key)
        if value is None and self.l2 is not None:
            read = await self.l2.get(key)
            self._promote(key, read, self._seconds(key, None))
            value = read.value
        return value

    async def set(self, key: str, value: Cached, *, ttl: float | None = None) -> None:
        if not self.enabled:
            return
        seconds = self._seconds(key, ttl)
        self.l1.set(key, value, seconds, value.tags)
        if self.l2 is not None:
            await self.l2.set(key, value, seconds * self.l2_ttl_factor)

    async def get_or_load(
        self, key: str, load: Callable[[], Awaitable[Cached]], *, ttl: float | None = None
    ) -> Cached:
        """The cached read for ``key``, or ``await load()`` run once for all concurrent misses.

        ``load`` returns the encoded read with its tags. Its exceptions reach every waiter
        and nothing is stored, so the next call loads again. ``ttl`` overrides the adaptive
        TTL.
        """
        if not self.enabled:
            return await load()
        self.ttl.record_read(key)
        value: Cached | None = self.l1.get(key)
        if value is not None:
            return value
        if key in self._flights:
            self.stats.coalesced += 1
        result: Cached = await self._flights.do(key, lambda: self._fill(key, load, ttl))
        return result

    async def invalidate(self, *tags: str) -> None:
        """Drop every entry carrying one of ``tags``: here, in L2 and in every other instance.

        Call it after the change is committed (``invalidate_on_commit`` does): a reader that
        misses before the commit would otherwise put the old value back.
        """
        if not tags:
            return
        self.drop_local(tags)
        if self.l2 is not None:
            await self.l2.invalidate(tags)

    def attach(self, memory: MemoryCache) -> None:
        """Apply every invalidation and every flush to ``memory`` too.

        For a map kept outside the cache, whose entries depend on data that other code
        invalidates by tag: ``invalidate`` then drops its entries in every process the
        invalidation reaches, and when invalidations may have been lost (``flush_local``) it
        is emptied with the L1.
        """
        self._attached.append(memory)

    @contextmanager
    def fenced(self) -> Iterator[Fence]:
        """A `Fence` open while the block computes a value to store."""
        fence = Fence()
        self._fences.add(fence)
        try:
            yield fence
        finally:
            self._fences.discard(fence)

    def drop_local(self, tags: Iterable[str]) -> None:
        """Apply an invalidation to this process only (also called for other instances')."""
        tags = frozenset(tags)
        self.stats.invalidations += 1
        self.generation += 1
        for tag in tags:
            for key in self.l1.delete_tag(tag):
                self.ttl.record_write(key)
            self.responses.delete_tag(tag)
            for memory in self._attached:
                memory.delete_tag(tag)
        for fence in self._fences:
            fence.invalidate(tags, self.generation)
        # A load already running may return the old state: later callers start their own.
        self._flights.forget_all()

    def flush_local(self) -> None:
        """Forget everything held in this process: used when invalidations may have been lost."""
        self.stats.flushes += 1
        self.generation += 1
        self.l1.clear()
        self.responses.clear()
        for memory in self._attached:
            memory.clear()
        for fence in self._fences:
            fence.flush(self.generation)
        self._flights.forget_all()

    async def _fill(
        self, key: str, load: Callable[[], Awaitable[Cached]], ttl: float | None
    ) -> Cached:
        with self.fenced() as fence:
            seconds = self._seconds(key, ttl)
            read = L2Read(None)
            if self.l2 is not None:
                read = await self.l2.get(key)
                if read.value is not None:
                    self._promote(key, read, seconds, fence)
                    return read.value
            self.stats.loads += 1
            value = await load()
            if not fence.spoils(value.tags):
                self.l1.set(key, value, seconds, value.tags)
                if self.l2 is not None:
                    await self.l2.set(key, value, seconds * self.l2_ttl_factor, read.fence)
            return value

    def _promote(self, key: str, read: L2Read, cap: float, fence: Fence | None = None) -> None:
        # Promote with the remaining L2 TTL, capped by what L1 would have chosen, so an entry
        # never outlives its L2 copy and L1 stays as fresh as its own TTL rule wants.
        value = read.value
        if value is not None and (fence is None or not fence.spoils(value.tags)):
            self.l1.set(key, value, min(read.ttl, cap), value.tags)
            self.stats.promotions += 1

    def _seconds(self, key: str, ttl: float | None) -> float:
        seconds = ttl or self.ttl.seconds(key)
        return seconds if self.degraded_ttl is None else min(seconds, self.degraded_ttl)


async def get_cache(request: Request) -> Cache:
    # async on purpose: FastAPI runs a plain `def` dependency in its thread pool, a thread
    # hop per request that cost more than the cached read it serves.
    cache: Cache = request.app.state.cache
    return cache


CacheDep = Annotated[Cache, Depends(get_cache)]
