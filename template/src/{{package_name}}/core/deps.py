"""Typed dependencies for the database: the `Database` container and one session per request.

Writing handlers declare ``session: SessionDep``. Reading handlers declare
``database: DatabaseDep`` and their service opens a plain connection for exactly its
queries: a read needs no ORM session and no COMMIT (the pool rolls the connection back),
and skips FastAPI's machinery for ``yield`` dependencies, a sizeable share of an uncached
list request. Tests swap `get_database` or `get_session` with
``app.dependency_overrides`` instead of patching globals.
"""

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

from .cache import CacheDep
from .db import Database

# Where a session collects the cache tags its writes changed.
CHANGED_TAGS = "changed_cache_tags"


async def get_database(request: Request) -> Database:
    """``async def`` although it never awaits: FastAPI runs plain ``def`` dependencies in a
    thread pool, a thread hop per request for a dictionary lookup."""
    database: Database = request.app.state.db
    return database


DatabaseDep = Annotated[Database, Depends(get_database)]


def invalidate_on_commit(session: AsyncSession, *tags: str) -> None:
    """Declare that this transaction changes the data behind ``tags``.

    Services call it next to the statement that makes the change. The cached reads carrying
    one of the tags are invalidated once, after the commit (by `get_session`): a read that
    missed before the commit would otherwise put the old value back, and a transaction
    that rolls back invalidates nothing.
    """
    session.info.setdefault(CHANGED_TAGS, set()).update(tags)


async def get_session(database: DatabaseDep, cache: CacheDep) -> AsyncIterator[AsyncSession]:
    """One transaction per request: committed when the handler returns, rolled back when it
    raises; after the commit, invalidate what the transaction declared it changed.

    The commit happens before the response is sent (``scope="function"``), so a failed
    commit is an error response instead of a success the client saw for data that was never
    written, and the response's client reads its own write at once.
    """
    async with database.transaction() as session:
        yield session
        changed = session.info.pop(CHANGED_TAGS, ())
    await cache.invalidate(*changed)


SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]
