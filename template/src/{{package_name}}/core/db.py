"""Async SQLAlchemy engine, session factory and the start-up connection budget check.

Why the pool is sized the way it is: under load the first thing to give out in a FastAPI
service is the connection pool, not the CPU. Every worker process owns one pool, so the
server must accept ``workers x (pool_size + max_overflow)`` connections; `open_database`
checks that against PostgreSQL's ``max_connections`` before serving a single request,
instead of failing with pool timeouts at peak traffic.
"""

import asyncio
import logging
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
    """The engine, with ``hide_parameters``: statement values stay out of error messages and
    logs, for they are user data (password hashes among them); the statement is still shown."""
    if settings.is_sqlite:
        engine = create_async_engine(
            settings.database_url, echo=settings.db_echo, hide_parameters=True
        )
        event.listen(engine.sync_engine, "connect", _set_sqlite_pragmas)
        return engine
    return create_async_engine(
        settings.database_url,
        echo=settings.db_echo,
        hide_parameters=True,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        pool_timeout=settings.db_pool_timeout,
        pool_recycle=settings.db_pool_recycle,
        pool_pre_ping=settings.db_pool_pre_ping,
        connect_args={
            # A database that does not answer fails the connection after this long, instead
            # of asyncpg's default minute: requests then get a prompt 503.
            "timeout": settings.db_connect_timeout_seconds,
            "server_settings": {
                "statement_timeout": str(settings.db_statement_timeout_ms),
                "application_name": __package__.partition(".")[0],
            },
        },
    )


async def check_connection_budget(engine: AsyncEngine, settings: Settings) -> None:
    """Refuse to start when the pools could exhaust PostgreSQL's connection slots."""
    if settings.is_sqlite:
        return
    per_worker = settings.db_pool_size + settings.db_max_overflow
    budget = settings.workers * per_worker
    async with engine.connect() as conn:
        max_connections = int((await conn.execute(text("SHOW max_connections"))).scalar_one())
        reserved = int(
            (await conn.execute(text("SHOW superuser_reserved_connections"))).scalar_one()
        )
    available = max_connections - reserved
    log.info(
        "connection budget: %d workers x (pool %d + overflow %d) = %d of %d available",
        settings.workers,
        settings.db_pool_size,
        settings.db_max_overflow,
        budget,
        available,
    )
    if budget > available:
        raise ConnectionBudgetError(
            f"{settings.workers} workers x (DB_POOL_SIZE {settings.db_pool_size} + "
            f"DB_MAX_OVERFLOW {settings.db_max_overflow}) = {budget} connections, but the "
            f"server accepts {available} (max_connections {max_connections} - "
            f"{reserved} reserved). Lower the pool settings or WORKERS, or raise max_connections."
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
