"""Posts: queries written against the table, not the ORM.

Reads select exactly the columns the response needs (the author's name comes from a join
on the primary key, the approved-comment count from a correlated subquery served by the
``comments (post_id, is_approved, ...)`` index) and encode the JSON straight from the
rows: one statement per page whatever its size, no ORM objects and no model instances.
"""

from collections.abc import AsyncIterator
from functools import cache
from typing import Any

import orjson
from fastapi import HTTPException, status
from sqlalchemy import Row, Select, bindparam, delete, func, insert, select, true, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession

from ..comments.models import Comment
from ..core.cache import Cache
from ..core.pagination import Keyset, PageParams, keyset_page, next_cursor, page_values
from ..users.models import User
from .models import Post as PostRow
from .schemas import Post, PostCreate, PostUpdate

posts = PostRow.__table__
users = User.__table__
comments = Comment.__table__

POST_COLUMNS = (
    posts.c.id,
    posts.c.author_id,
    posts.c.title,
    posts.c.body,
    posts.c.published,
    posts.c.created_at,
)

comment_count = (
    select(func.count())
    .where(comments.c.post_id == posts.c.id, comments.c.is_approved == true())
    .scalar_subquery()
    .label("comment_count")
)

EXPORT_BATCH_SIZE = 1000

# Cache tags. Every cached post read carries POSTS_TAG, which the edge cache's write rule
# drops after any successful write (a user's new name or an approved comment changes posts
# too); list pages also carry LISTS_TAG, dropped when a post is created, changed or deleted.
POSTS_TAG = "posts"
LISTS_TAG = "posts:lists"
POST_TAGS = (POSTS_TAG,)
LIST_TAGS = (POSTS_TAG, LISTS_TAG)


async def commit_and_refresh_posts(session: AsyncSession, data_cache: Cache) -> None:
    """For writes elsewhere that change what cached posts show (an author's name, an
    approved-comment count): commit first, so no read in between caches the old rows."""
    await session.commit()
    await data_cache.invalidate_tags(POSTS_TAG)


def _not_found(post_id: int) -> HTTPException:
    return HTTPException(status.HTTP_404_NOT_FOUND, f"Post {post_id} does not exist.")


def _unknown_author() -> HTTPException:
    return HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "author_id names no existing user.")


WITH_AUTHOR = select(*POST_COLUMNS, users.c.name.label("author_name"), comment_count).join(
    users, users.c.id == posts.c.author_id
)
GET_POST = WITH_AUTHOR.where(posts.c.id == bindparam("post_id"))


def _post_document(row: Row[Any]) -> dict[str, Any]:
    """One `PostWithAuthor` as the dict that `encode` turns into exactly Pydantic's JSON for
    it: the same keys in the same order, UTC written as "Z" (a test holds the two to the same
    bytes). Building the models first, even unvalidated with ``model_construct``, cost
    ~117 µs per 20-post page against ~12 µs for this, an eighth of an uncached list request.
    """
    return {
        "id": row.id,
        "author_id": row.author_id,
        "title": row.title,
        "body": row.body,
        "published": row.published,
        "created_at": row.created_at,
        "author": {"id": row.author_id, "name": row.author_name},
        "comment_count": row.comment_count,
    }


def encode(document: object) -> bytes:
    return orjson.dumps(document, option=orjson.OPT_UTC_Z)


@cache
def _keyset_statement(
    base: Select[Any], by_author: bool, by_published: bool, after: bool
) -> Select[Any]:
    """Built once per combination of filters, then reused with new parameters.

    SQLAlchemy caches the compiled SQL, but building a statement and computing its cache
    key still cost about 300 µs of a 770 µs 20-row read (measured on SQLite); a reused
    statement object skips both.
    """
    if by_author:
        base = base.where(posts.c.author_id == bindparam("author_id"))
    if by_published:
        base = base.where(posts.c.published == bindparam("published"))
    return keyset_page(base, posts.c.created_at, posts.c.id, after=after)


def _keyset_query(
    base: Select[Any], author_id: int | None, published: bool | None, page: PageParams
) -> tuple[Select[Any], dict[str, Any]]:
    values = page_values(page)
    if author_id is not None:
        values["author_id"] = author_id
    if published is not None:
        values["published"] = published
    stmt = _keyset_statement(
        base, author_id is not None, published is not None, page.after is not None
    )
    return stmt, values


def list_posts_query(
    author_id: int | None, published: bool | None, page: PageParams
) -> tuple[Select[Any], dict[str, Any]]:
    return _keyset_query(WITH_AUTHOR, author_id, published, page)


def post_key(post_id: int) -> str:
    return f"post:{post_id}"


def list_key(author_id: int | None, published: bool | None, page: PageParams) -> str:
    after = f"{page.after.created_at.isoformat()},{page.after.id}" if page.after else ""
    return f"posts:list:{author_id}:{published}:{page.limit}:{after}"


async def get_post_json(engine: AsyncEngine, post_id: int) -> bytes:
    """The post encoded once, for the cache to hand out as is."""
    async with engine.connect() as conn:
        row = (await conn.execute(GET_POST, {"post_id": post_id})).first()
    if row is None:
        raise _not_found(post_id)
    return encode(_post_document(row))


async def list_posts_json(
    engine: AsyncEngine, author_id: int | None, published: bool | None, page: PageParams
) -> bytes:
    """A `PostPage`, encoded once for the cache."""
    async with engine.connect() as conn:
        rows = list(await conn.execute(*list_posts_query(author_id, published, page)))
    cursor = next_cursor(rows, page.limit)
    return encode({"items": [_post_document(row) for row in rows], "next_cursor": cursor})


async def create_post(session: AsyncSession, data: PostCreate) -> Post:
    stmt = insert(posts).values(**data.model_dump()).returning(*POST_COLUMNS)
    try:
        row = (await session.execute(stmt)).one()
    except IntegrityError as exc:
        raise _unknown_author() from exc
    return Post.model_validate(row._mapping)


async def create_posts(session: AsyncSession, batch: list[PostCreate]) -> list[Post]:
    """One multi-row ``INSERT ... VALUES (...), (...) RETURNING`` for the whole batch.

    One round trip instead of one per row. Ids grow in VALUES order on both databases,
    so sorting the returned rows by id gives them back in the order they were sent.
    """
    stmt = insert(posts).values([item.model_dump() for item in batch]).returning(*POST_COLUMNS)
    try:
        rows = (await session.execute(stmt)).all()
    except IntegrityError as exc:
        raise _unknown_author() from exc
    return [Post.model_validate(row._mapping) for row in sorted(rows, key=lambda row: row.id)]


async def update_post(session: AsyncSession, post_id: int, data: PostUpdate) -> Post:
    stmt = (
        update(posts)
        .where(posts.c.id == post_id)
        .values(**data.model_dump())
        .returning(*POST_COLUMNS)
    )
    row = (await session.execute(stmt)).first()
    if row is None:
        raise _not_found(post_id)
    return Post.model_validate(row._mapping)


async def delete_post(session: AsyncSession, post_id: int) -> None:
    """Deletes the post's comments too (ON DELETE CASCADE)."""
    result = await session.execute(delete(posts).where(posts.c.id == post_id).returning(posts.c.id))
    if result.first() is None:
        raise _not_found(post_id)


EXPORT = select(*POST_COLUMNS)


def export_query(
    author_id: int | None, published: bool | None, page: PageParams
) -> tuple[Select[Any], dict[str, Any]]:
    return _keyset_query(EXPORT, author_id, published, page)


async def export_posts(
    connection: AsyncConnection,
    author_id: int | None,
    published: bool | None,
    batch_size: int = EXPORT_BATCH_SIZE,
) -> AsyncIterator[bytes]:
    """Every matching post as NDJSON, newest first, one keyset batch in memory at a time.

    Each batch is a short indexed query (no server-side cursor held open, no OFFSET), and
    each is encoded into one chunk, so memory stays flat whatever the table size.
    """
    after: Keyset | None = None
    while True:
        query = export_query(author_id, published, PageParams(batch_size, after))
        rows = list(await connection.execute(*query))
        more = len(rows) > batch_size
        del rows[batch_size:]
        if rows:
            yield b"".join(encode(row._asdict()) + b"\n" for row in rows)
        if not more:
            return
        after = Keyset(rows[-1].created_at, rows[-1].id)
