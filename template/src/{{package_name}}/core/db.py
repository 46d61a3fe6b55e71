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
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import event, make_url, text
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from ..settings import Settings

log = logging.getLogger(__name__)


class ConnectionBudgetError(RuntimeError):
    """The configured pools could open more connections than the server accepts."""


@dataclass(frozen=True, slots=True)
class Database:
    engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]
    # SQLite only: the writers of this process take turns here (see `transaction`).
    write_lock: asyncio.Lock | None = field(default=None)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """A session for one write transaction; the caller commits or rolls back.

        SQLite lets one writer at a time hold the database file. Writers that find it taken
        poll it from SQLite's busy handler, sleeping up to 100 ms between tries and in no
        particular order, so under a steady share of writes some wait for seconds. Here the
        writers of this process queue on an asyncio lock instead, first come first served,
        and ``BEGIN IMMEDIATE`` takes the file lock when the transaction starts, so one that
        reads before it writes cannot fail to upgrade its lock halfway. PostgreSQL has row
        locks and needs neither.
        """
        if self.write_lock is None:
            async with self.sessionmaker() as session:
                yield session
            return
        async with self.write_lock, self.sessionmaker() as session:
            await session.execute(text("BEGIN IMMEDIATE"))
            yield session

    async def ping(self) -> None:
        """Round-trip to the server: readiness means a query answers, not a pool exists."""
        async with self.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))


def _set_sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets readers run beside the writer; NORMAL is durable in WAL mode and avoids
    # an fsync per commit; busy_timeout waits for the write lock instead of failing.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()


def driver_errors(settings: Settings) -> tuple[type[Exception], ...]:
    """The driver's base error class. SQLAlchemy wraps the errors of statements in its own
    classes, but one raised while opening a connection (the server is starting up, say)
    reaches the application as the driver raised it."""
    dbapi = make_url(settings.database_url).get_dialect().import_dbapi()
    return (dbapi.Error,)


def create_engine(settings: Settings) -> AsyncEngine:
    if settings.is_sqlite:
        engine = create_async_engine(settings.database_url, echo=settings.db_echo)
        event.listen(engine.sync_engine, "connect", _set_sqlite_pragmas)
        return engine
    return create_async_engine(
        settings.database_url,
        echo=settings.db_echo,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        pool_timeout=settings.db_pool_timeout,
        pool_recycle=settings.db_pool_recycle,
        pool_pre_ping=settings.db_pool_pre_ping,
        connect_args=postgresql_connect_args(settings),
    )


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
    engine = create_engine(settings)
    try:
        await check_connection_budget(engine, settings)
        sessionmaker = async_sessionmaker(engine, expire_on_commit=False)
        yield Database(engine, sessionmaker, asyncio.Lock() if settings.is_sqlite else None)
    finally:
        await engine.dispose()
