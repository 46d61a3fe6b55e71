"""Async SQLAlchemy engine, session factory and the start-up connection budget check.

Why the pool is sized the way it is: under load the first thing to give out in a FastAPI
service is the connection pool, not the CPU. Every worker process of every replica owns one
pool, so the server must accept ``workers x replicas x (pool_size + max_overflow)``
connections; `open_database` checks that before serving a single request, instead of
failing with pool timeouts at peak traffic. Through PgBouncer (``DB_PGBOUNCER``) the pools
are PgBouncer's clients, and the driver is set up for its transaction pooling
(`postgresql_connect_args`).
"""

import asyncio
import logging
import sqlite3
import time
import uuid
from collections.abc import AsyncIterator, Callable, Generator
from contextlib import asynccontextmanager, nullcontext
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import aiosqlite
from sqlalchemy import event, make_url, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from ..settings import Settings

log = logging.getLogger(__name__)


class ConnectionBudgetError(RuntimeError):
    """The configured pools could open more connections than the server accepts."""


class LoopConnection(aiosqlite.Connection):
    """An aiosqlite connection that runs each call at once on the event loop's thread.

    aiosqlite hands every call to a thread of its own and back: with the server's thread
    busy serving requests, each hand-off waits for the interpreter's lock and a turn of the
    event loop, several per statement, so a write transaction holds SQLite's single write
    lock many times longer than its statements take and writers queue. An SQLite statement
    on a local file takes microseconds; running it in place is faster than the hop. The one
    wait that can be long, for another process holding the write lock, is awaited without
    blocking (see `Database.transaction`). aiosqlite offers no option for this: its queue to
    the thread is replaced by `_RunHere`, and its thread is never started.
    """

    def __init__(self, connector: Callable[[], sqlite3.Connection], iter_chunk_size: int) -> None:
        super().__init__(connector, iter_chunk_size)
        self._tx = _RunHere()  # type: ignore[assignment]

    def __await__(self) -> Generator[Any, None, "LoopConnection"]:
        return self._connect().__await__()  # type: ignore[return-value]

    @classmethod
    def connect(cls, database: str, **kwargs: Any) -> "LoopConnection":
        """Like `aiosqlite.connect`: the sqlite3 connection opens when awaited."""
        return cls(partial(sqlite3.connect, database, **kwargs), iter_chunk_size=64)


class _RunHere:
    """Stands in for aiosqlite's queue to its thread: runs each call when it is queued."""

    def put_nowait(self, item: tuple[asyncio.Future[Any] | None, Callable[[], Any]]) -> None:
        future, function = item
        try:
            result = function()
        except BaseException as exc:  # handed to the caller, as aiosqlite's thread does
            if future is not None and not future.done():
                future.set_exception(exc)
        else:
            if future is not None and not future.done():
                future.set_result(result)


class LoopEngine(AsyncEngine):
    """SQLite's engine: its connections, and the sessions of `LoopSession`, close in place.

    Leaving ``async with``, SQLAlchemy closes a connection or a session in a task of its own
    and waits for that task, so that a cancelled request cannot abandon the close halfway
    (with a network driver, between returning the connection and resetting it). Starting
    the task and waking the request once it is done take three turns of the event loop, and
    under load each turn waits for every other request that is ready: that wait was most of
    the time a write or a cache miss took. On a `LoopConnection` closing never waits for
    anything, so there is no halfway point to protect, and these classes close directly.
    """

    def connect(self) -> AsyncConnection:
        return _LoopEngineConnection(self)


class _LoopEngineConnection(AsyncConnection):
    async def __aexit__(self, *_exc_info: object) -> None:
        await self.close()


class LoopSession(AsyncSession):
    """A session that closes in place on a `LoopEngine` (see there)."""

    async def __aexit__(self, *_exc_info: object) -> None:
        await self.close()


def _connect_on_loop(dialect: Any, _record: Any, cargs: Any, cparams: Any) -> Any:
    return dialect.dbapi.connect(*cargs, async_creator_fn=LoopConnection.connect, **cparams)


@dataclass(frozen=True, slots=True)
class Database:
    engine: AsyncEngine
    # Reads of one statement (each cached read's query): see `create_engines`.
    reads: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]
    # SQLite only: the writers of this process take turns here (see `transaction`).
    write_lock: asyncio.Lock | None = field(default=None)
    # SQLite only: how long a writer waits for another process to release the database.
    busy_timeout_seconds: float = 5.0

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """A session in one write transaction: committed when the block ends, rolled back
        when it raises. Every write of the application goes through here.

        SQLite lets one writer at a time hold the database file. Writers that find it taken
        poll it from SQLite's busy handler, sleeping up to 100 ms between tries and in no
        particular order, so under a steady share of writes some wait for seconds. Here the
        writers of this process queue on an asyncio lock instead, first come first served,
        and hold it from ``BEGIN IMMEDIATE`` to the commit only: the session is closed after
        the lock is released. PostgreSQL has row locks and needs neither.
        """
        async with self.sessionmaker() as session, self.write_lock or nullcontext():
            if self.write_lock is not None:
                await self._begin_immediate(session)
            try:
                yield session
            except BaseException:
                await session.rollback()
                raise
            await session.commit()

    async def _begin_immediate(self, session: AsyncSession) -> None:
        """Take SQLite's write lock at the start, so a transaction that reads before it
        writes cannot fail to upgrade its lock halfway. Another process (a second worker,
        the seed command) may hold it: then try again after a pause, without SQLite's busy
        handler, which would block the event loop while it waits.

        These are commands to SQLite, with no parameters and no result: they go straight
        to the driver's connection, as SQLAlchemy's statement machinery costs many times
        what SQLite takes to run them, three times in every write.
        """
        sqlite = (await (await session.connection()).get_raw_connection()).driver_connection
        deadline = time.monotonic() + self.busy_timeout_seconds
        pause = 0.001
        await sqlite.execute("PRAGMA busy_timeout = 0")
        try:
            while True:
                try:
                    await sqlite.execute("BEGIN IMMEDIATE")
                    return
                except sqlite3.OperationalError as exc:
                    busy = getattr(exc, "sqlite_errorname", "") == "SQLITE_BUSY"
                    if not busy or time.monotonic() + pause > deadline:
                        # Wrapped as SQLAlchemy wraps a statement's errors, so that it is
                        # answered like any other unavailable database.
                        raise OperationalError("BEGIN IMMEDIATE", None, exc) from exc
                await asyncio.sleep(pause)
                pause = min(pause * 2, 0.05)
        finally:
            busy_timeout_ms = round(self.busy_timeout_seconds * 1000)
            await sqlite.execute(f"PRAGMA busy_timeout = {busy_timeout_ms}")

    async def ping(self) -> None:
        """Round-trip to the server: readiness means a query answers, not a pool exists."""
        async with self.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))


def _sqlite_pragmas(busy_timeout_ms: int) -> Callable[[Any, Any], None]:
    def set_pragmas(dbapi_connection: Any, _record: Any) -> None:
        # WAL lets readers run beside the writer; NORMAL is durable in WAL mode and avoids
        # an fsync per commit; busy_timeout waits for the write lock instead of failing.
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={busy_timeout_ms}")
        cursor.close()

    return set_pragmas


def driver_errors(settings: Settings) -> tuple[type[Exception], ...]:
    """The driver's base error class. SQLAlchemy wraps the errors of statements in its own
    classes, but one raised while opening a connection (the server is starting up, say)
    reaches the application as the driver raised it."""
    dbapi = make_url(settings.database_url).get_dialect().import_dbapi()
    return (dbapi.Error,)


def create_engine(settings: Settings) -> AsyncEngine:
    """The engine, for commands and scripts: transactions as usual."""
    engine, _ = create_engines(settings)
    return engine


def create_engines(settings: Settings) -> tuple[AsyncEngine, AsyncEngine]:
    """The engine, and the engine for reads of one statement, on one pool.

    Both set ``hide_parameters``: statement values stay out of error messages and logs, for
    they are user data (password hashes among them); the statement is still shown.

    Straight to PostgreSQL, reads run outside a transaction. One SELECT sees one consistent
    snapshot with or without a transaction around it, but the transaction costs round
    trips: ``BEGIN`` before the query and ``ROLLBACK`` when the connection is returned, and
    SQLAlchemy's asyncpg dialect wraps the pool's pre-ping in one as well, so a cached
    read's miss waited for six answers from the server instead of two. Under load each
    answer waits a turn of the event loop behind every other ready request, and the
    connection stays out of the pool meanwhile. So the pool's connections rest in
    autocommit (the pre-ping is then one round trip) and reads keep it, while the engine
    sets READ COMMITTED (PostgreSQL's own default) on each connection it takes, which
    asyncpg does without a round trip. Through PgBouncer in transaction pooling mode a
    statement outside a transaction may be prepared on one server connection and run on
    another, so there reads keep their transaction; SQLite reads need neither.
    """
    if settings.is_sqlite:
        engine = create_async_engine(
            settings.database_url, echo=settings.db_echo, hide_parameters=True
        )
        event.listen(engine.sync_engine, "do_connect", _connect_on_loop)
        busy_timeout_ms = round(settings.db_busy_timeout_seconds * 1000)
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas(busy_timeout_ms))
        engine = LoopEngine(engine.sync_engine)
        return engine, engine
    pool = create_async_engine(
        settings.database_url,
        echo=settings.db_echo,
        hide_parameters=True,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        pool_timeout=settings.db_pool_timeout,
        pool_recycle=settings.db_pool_recycle,
        pool_pre_ping=settings.db_pool_pre_ping,
        connect_args=postgresql_connect_args(settings),
        isolation_level=None if settings.db_pgbouncer else "AUTOCOMMIT",
    )
    if settings.db_pgbouncer:
        return pool, pool
    return pool.execution_options(isolation_level="READ COMMITTED"), pool


def postgresql_connect_args(settings: Settings) -> dict[str, Any]:
    """asyncpg's connection arguments, straight to PostgreSQL or through PgBouncer.

    Straight to PostgreSQL, the statement timeout is a session setting sent when the
    connection opens, and each connection keeps its prepared statements.

    PgBouncer in transaction pooling mode lends a server connection for one transaction
    only: the next transaction of the same client may run on another one, which another
    client used a moment ago. Hence, following SQLAlchemy's asyncpg notes ("Prepared
    Statement Name with PGBouncer"):

    - no prepared statement cache, neither asyncpg's (``statement_cache_size``) nor
      SQLAlchemy's (``prepared_statement_cache_size``): a cached statement would be looked
      for on a server connection that never saw it;
    - the statement SQLAlchemy still prepares inside each transaction, to learn the result
      columns, gets a unique name: asyncpg's numbered names (``__asyncpg_stmt_1__``) repeat
      from client to client and clash on a shared server connection;
    - no ``statement_timeout`` startup parameter: PgBouncer refuses parameters it does not
      track, and one it is told to ignore (``ignore_startup_parameters``) never reaches
      PostgreSQL, so the timeout would silently be gone. asyncpg enforces it instead
      (``command_timeout``): past it, asyncpg cancels the statement on the server (PgBouncer
      forwards the cancel request) and raises ``TimeoutError``, answered with a 503.

    The pool stays: PgBouncer's clients are cheap to keep, and connecting per request would
    pay asyncpg's connection set-up every time. What SQLAlchemy's notes warn about, unique
    statements piling up on PgBouncer's server connections, is PgBouncer's to clear after
    each transaction (``server_reset_query_always``; see the README).
    """
    server_settings = {"application_name": __package__.partition(".")[0]}
    connect_args: dict[str, Any] = {
        # A database that does not answer fails the connection after this long, instead
        # of asyncpg's default minute: requests then get a prompt 503.
        "timeout": settings.db_connect_timeout_seconds,
        "server_settings": server_settings,
    }
    timeout_ms = settings.db_statement_timeout_ms
    if not settings.db_pgbouncer:
        server_settings["statement_timeout"] = str(timeout_ms)
        return connect_args
    return {
        **connect_args,
        "statement_cache_size": 0,
        "prepared_statement_cache_size": 0,
        "prepared_statement_name_func": _unique_statement_name,
        "command_timeout": timeout_ms / 1000 if timeout_ms else None,
    }


def _unique_statement_name() -> str:
    return f"__asyncpg_{uuid.uuid4().hex}__"


async def check_connection_budget(engine: AsyncEngine, settings: Settings) -> None:
    """Refuse to start when the pools could open more connections than the server accepts.

    Every worker of every replica owns a pool of up to ``DB_POOL_SIZE + DB_MAX_OVERFLOW``
    connections. Straight to PostgreSQL they all take a slot of ``max_connections`` (less
    the slots reserved for superusers), read from the server. Through PgBouncer they are
    PgBouncer's clients instead and must fit its ``max_client_conn``, which the service
    cannot read without PgBouncer admin rights: ``DB_PGBOUNCER_MAX_CLIENT_CONN`` says it.
    PgBouncer's own server connections (``default_pool_size`` per database and user, plus
    ``reserve_pool_size``) are then what must fit ``max_connections``: PgBouncer's
    configuration, checked where it is written (see the README).
    """
    if settings.is_sqlite:
        return
    per_worker = settings.db_pool_size + settings.db_max_overflow
    processes = settings.workers * settings.replicas
    budget = processes * per_worker
    pools = (
        f"{settings.workers} workers x {settings.replicas} replicas x (DB_POOL_SIZE "
        f"{settings.db_pool_size} + DB_MAX_OVERFLOW {settings.db_max_overflow}) = {budget}"
    )
    if settings.db_pgbouncer:
        accepted = settings.db_pgbouncer_max_client_conn
        log.info("connection budget: %s PgBouncer clients of %d", pools, accepted)
        if budget > accepted:
            raise ConnectionBudgetError(
                f"{pools} connections to PgBouncer, but DB_PGBOUNCER_MAX_CLIENT_CONN (its "
                f"max_client_conn) is {accepted}. Lower the pool settings, WORKERS or "
                "REPLICAS, or raise max_client_conn in pgbouncer.ini and this setting with it."
            )
        return
    async with engine.connect() as conn:
        max_connections = int((await conn.execute(text("SHOW max_connections"))).scalar_one())
        reserved = int(
            (await conn.execute(text("SHOW superuser_reserved_connections"))).scalar_one()
        )
    available = max_connections - reserved
    log.info("connection budget: %s connections of %d available", pools, available)
    if budget > available:
        raise ConnectionBudgetError(
            f"{pools} connections, but the server accepts {available} (max_connections "
            f"{max_connections} - {reserved} reserved). Lower the pool settings, WORKERS or "
            "REPLICAS, raise max_connections, or put PgBouncer in front (DB_PGBOUNCER)."
        )


@asynccontextmanager
async def open_database(settings: Settings) -> AsyncIterator[Database]:
    engine, reads = create_engines(settings)
    try:
        await check_connection_budget(engine, settings)
        if settings.is_sqlite:
            sessionmaker = async_sessionmaker(engine, class_=LoopSession, expire_on_commit=False)
            yield Database(
                engine, reads, sessionmaker, asyncio.Lock(), settings.db_busy_timeout_seconds
            )
        else:
            yield Database(engine, reads, async_sessionmaker(engine, expire_on_commit=False))
    finally:
        await engine.dispose()
