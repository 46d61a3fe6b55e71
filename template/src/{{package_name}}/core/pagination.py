"""Keyset pagination with opaque cursors.

``OFFSET`` makes the database read and throw away every skipped row, so page 1,000 costs
a thousand pages; a keyset ("rows older than the last one I saw") is one index range scan
whatever the depth, and stays correct while rows are inserted. Every list pages newest
first on ``(created_at, id)``: ``id`` breaks ties between rows created in the same
microsecond. The cursor is that pair, base64-encoded so clients treat it as opaque.
"""

import base64
import binascii
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

import orjson
from fastapi import Depends, HTTPException, Query, Request, status
from sqlalchemy import ColumnElement, Select, or_


@dataclass(frozen=True, slots=True)
class Keyset:
    created_at: datetime
    id: int


def encode_cursor(created_at: datetime, id_: int) -> str:
    raw = orjson.dumps([created_at.isoformat(), id_])
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def decode_cursor(cursor: str) -> Keyset:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        created_at, id_ = orjson.loads(raw)
        keyset = Keyset(datetime.fromisoformat(created_at), int(id_))
    except (binascii.Error, ValueError, TypeError) as exc:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT, "cursor is not a cursor this API returned"
        ) from exc
    if keyset.created_at.tzinfo is None:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT, "cursor is not a cursor this API returned"
        )
    return keyset


@dataclass(frozen=True, slots=True)
class PageParams:
    limit: int
    after: Keyset | None

    def __str__(self) -> str:
        """A stable text form, for cache keys."""
        if self.after is None:
            return f"limit={self.limit}"
        return f"limit={self.limit}&after={self.after.created_at.isoformat()},{self.after.id}"


async def page_params(
    request: Request,
    limit: Annotated[int, Query(ge=1, description="Page size, capped by MAX_PAGE_SIZE")] = 20,
    cursor: Annotated[str | None, Query(description="next_cursor of the previous page")] = None,
) -> PageParams:
    """Clamp rather than refuse a large ``limit``: the cap protects the server, not the client.

    ``async def`` so FastAPI calls it inline instead of in its thread pool.
    """
    cap: int = request.app.state.settings.max_page_size
    return PageParams(min(limit, cap), decode_cursor(cursor) if cursor else None)


PageDep = Annotated[PageParams, Depends(page_params)]


def keyset_page(
    stmt: Select[Any],
    created_at: ColumnElement[datetime],
    id_: ColumnElement[int],
    page: PageParams,
) -> Select[Any]:
    """Newest first, after the page's cursor, with one row more than asked: the extra row
    tells whether a next page exists without a COUNT (`next_cursor` drops it).

    ``created_at <= x`` is the index range both PostgreSQL and SQLite seek to; the OR only
    filters the rows tied on ``x``. A bare ``a < x OR (a = x AND id < y)`` is no range, and
    PostgreSQL would scan and discard every newer row.
    """
    if page.after is not None:
        after = page.after
        stmt = stmt.where(
            created_at <= after.created_at,
            or_(created_at < after.created_at, id_ < after.id),
        )
    return stmt.order_by(created_at.desc(), id_.desc()).limit(page.limit + 1)


def next_cursor(rows: list[Any], limit: int) -> str | None:
    """Drop the look-ahead row; the cursor points at the last row returned."""
    if len(rows) <= limit:
        return None
    del rows[limit:]
    last = rows[-1]
    return encode_cursor(last.created_at, last.id)
