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
from sqlalchemy import ColumnElement, Integer, Result, Select, bindparam, or_


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
    tells whether a next page exists without a COUNT (`page_rows` drops it).

    A new statement per call; a list read often builds `keyset_statement` once instead.
    """
    after = page.after is not None
    return keyset_statement(stmt, created_at, id_, after=after).params(keyset_parameters(page))


def keyset_statement(
    stmt: Select[Any],
    created_at: ColumnElement[datetime],
    id_: ColumnElement[int],
    *,
    after: bool,
) -> Select[Any]:
    """`keyset_page` with the cursor (when ``after``) and the limit left as parameters, to
    build once and run with `keyset_parameters`: SQLAlchemy reuses the compiled form of a
    statement it has seen, but a statement built anew is walked again on every call, which
    costs more than SQLite takes to run it.

    ``created_at <= x`` is the index range both PostgreSQL and SQLite seek to; the OR only
    filters the rows tied on ``x``. A bare ``a < x OR (a = x AND id < y)`` is no range, and
    PostgreSQL would scan and discard every newer row.
    """
    if after:
        after_created_at = bindparam("after_created_at")
        stmt = stmt.where(
            created_at <= after_created_at,
            or_(created_at < after_created_at, id_ < bindparam("after_id")),
        )
    return stmt.order_by(created_at.desc(), id_.desc()).limit(bindparam("limit", type_=Integer))


def keyset_parameters(page: PageParams) -> dict[str, Any]:
    """The values of `keyset_statement`'s parameters for ``page``."""
    values: dict[str, Any] = {"limit": page.limit + 1}
    if page.after is not None:
        values["after_created_at"] = page.after.created_at
        values["after_id"] = page.after.id
    return values


def page_rows(result: Result[Any], limit: int) -> tuple[list[dict[str, Any]], str | None]:
    """A page's rows, less the look-ahead row, and the next page's cursor (None on the last).

    The rows are dicts by column name, for the page's response model to validate in one call
    (``Page.model_validate({"items": rows, ...})``): SQLAlchemy's ``row._mapping`` looks up
    each value in Python, while zipping the column names with a row's values costs a
    fraction of that, and Pydantic reads plain dicts in its compiled core.
    """
    keys = tuple(result.keys())
    rows = [dict(zip(keys, row, strict=True)) for row in result]
    if len(rows) <= limit:
        return rows, None
    del rows[limit:]
    return rows, encode_cursor(rows[-1]["created_at"], rows[-1]["id"])
