"""Posts: the queries, and what each read shows and each write changes, for the cache.

Reads select exactly the columns the response needs: the author's name comes from a join on
the primary key, the approved-comment count from a correlated subquery served by the
``comments (post_id, is_approved, ...)`` index. One statement per page whatever its size.

Each read returns a ``Cached``: the response encoded once, with the tags of the data it
shows (the post, its author's name, its comment count). Each write declares the tags it
changes with ``invalidate_on_commit``; after the commit, exactly the cached reads carrying
them are dropped. List pages are the subtle part:

- a new post is newer than every row, so it can only enter first pages: pages reached
  through a cursor hold the rows older than it and do not change (keyset pagination);
- a post whose ``published`` flag flips can enter a published-filtered list anywhere, so
  every page of those lists carries its filter's tag;
- a post that changes or goes away is dropped from the pages holding it by its own tag.
"""

from collections.abc import AsyncIterator, Iterable, Mapping
from functools import cache
from typing import Any

from sqlalchemy import Select, bindparam, delete, func, insert, select, true, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession

from ..comments.models import Comment, approved_comments_tag, comment_count_tag
from ..core.cache import Cached, cached, encode
from ..core.deps import invalidate_on_commit
from ..core.errors import InvalidReference, NotFound
from ..core.pagination import (
    Keyset,
    PageParams,
    decode_cursor,
    keyset_parameters,
    keyset_statement,
    page_rows,
)
from ..users.models import User, user_tag
from .models import Post as PostRow
from .models import authored_posts_tag, post_tag
from .schemas import Post, PostCreate, PostPage, PostUpdate, PostWithAuthor

posts = PostRow.__table__
users = User.__table__
comments = Comment.__table__

EXPORT_BATCH_SIZE = 1000


class PostNotFound(NotFound):
    def __init__(self, post_id: int) -> None:
        super().__init__(f"Post {post_id} does not exist.")


class UnknownUser(InvalidReference):
    """A post or comment whose ``author_id`` names no user (the foreign key refused it)."""

    def __init__(self, field: str) -> None:
        super().__init__(f"{field} names no existing user.")


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
WITH_AUTHOR = select(*POST_COLUMNS, users.c.name.label("author_name"), comment_count).join(
    users, users.c.id == posts.c.author_id
)
# The statements a cached read misses into and a post's update runs, built once with the
# values as parameters: building one costs SQLAlchemy more than the database takes to run it.
POST_BY_ID = WITH_AUTHOR.where(posts.c.id == bindparam("post_id"))
PUBLISHED_FOR_UPDATE = (
    select(posts.c.published).where(posts.c.id == bindparam("post_id")).with_for_update()
)
UPDATE_POST = update(posts).where(posts.c.id == bindparam("post_id")).returning(*POST_COLUMNS)


EXPORTED = select(*POST_COLUMNS)


@cache
def _page_statement(
    base: Select[Any], by_author: bool, by_published: bool, after: bool
) -> Select[Any]:
    """A page of ``base`` for one combination of filters and cursor, built once with the
    values as parameters (`_page`): an uncached list page is the most common miss."""
    stmt = base
    if by_author:
        stmt = stmt.where(posts.c.author_id == bindparam("author_id"))
    if by_published:
        stmt = stmt.where(posts.c.published == bindparam("published"))
    return keyset_statement(stmt, posts.c.created_at, posts.c.id, after=after)


def _page(
    base: Select[Any], author_id: int | None, published: bool | None, page: PageParams
) -> tuple[Select[Any], dict[str, Any]]:
    """The statement of this page of ``base`` and its parameter values."""
    stmt = _page_statement(
        base, author_id is not None, published is not None, page.after is not None
    )
    values = keyset_parameters(page)
    if author_id is not None:
        values["author_id"] = author_id
    if published is not None:
        values["published"] = published
    return stmt, values


def list_posts_query(
    author_id: int | None, published: bool | None, page: PageParams
) -> Select[Any]:
    """The list page's statement with its values bound, as `list_posts` runs it."""
    stmt, values = _page(WITH_AUTHOR, author_id, published, page)
    return stmt.params(values)


def export_query(author_id: int | None, published: bool | None, page: PageParams) -> Select[Any]:
    """An export batch's statement with its values bound, as `export_posts` runs it."""
    stmt, values = _page(EXPORTED, author_id, published, page)
    return stmt.params(values)


# What cached reads show, as tags.


def _shown(row: Mapping[str, Any]) -> set[str]:
    """A post as reads show it: its fields, its author's name, its approved-comment count."""
    post_id = row["id"]
    return {post_tag(post_id), user_tag(row["author_id"]), comment_count_tag(post_id)}


def _first_page_tag(author_id: int | None, published: bool | None) -> str:
    """The first pages of a list: where a new post enters it."""
    return f"posts:first:{author_id}:{published}"


def _filtered_tag(author_id: int | None, published: bool) -> str:
    """Every page of a list filtered on ``published``: a post whose flag flips enters anywhere."""
    return f"posts:published={published}:{author_id}"


def _list_tags(author_id: int | None, published: bool | None, first_page: bool) -> set[str]:
    """Which posts a page of this list holds, beyond the posts it already shows."""
    tags = {_first_page_tag(author_id, published)} if first_page else set()
    if published is not None:
        tags.add(_filtered_tag(author_id, published))
    return tags


# What writes change, as tags.


def _new_post_tags(author_id: int, published: bool) -> set[str]:
    """A new post enters the first page of every list whose filters it matches."""
    tags = {authored_posts_tag(author_id)}
    for by_author in (None, author_id):
        for by_published in (None, published):
            tags.add(_first_page_tag(by_author, by_published))
    return tags


def _published_flip_tags(author_id: int, published: bool) -> set[str]:
    """A post newly (un)published enters every page of the lists filtered on that state."""
    return {_filtered_tag(by_author, published) for by_author in (None, author_id)}


# Reads.


def _with_author(row: Mapping[str, Any]) -> dict[str, Any]:
    """A post row in the shape of `PostWithAuthor`: the author's id and name as one object."""
    post = dict(row)
    post["author"] = {"id": post["author_id"], "name": post.pop("author_name")}
    return post


async def get_post(engine: AsyncEngine, post_id: int) -> Cached:
    async with engine.connect() as conn:
        row = (await conn.execute(POST_BY_ID, {"post_id": post_id})).first()
    if row is None:
        raise PostNotFound(post_id)
    return cached(PostWithAuthor.model_validate(_with_author(row._mapping)), _shown(row._mapping))


async def list_posts(
    engine: AsyncEngine, author_id: int | None, published: bool | None, page: PageParams
) -> Cached:
    async with engine.connect() as conn:
        result = await conn.execute(*_page(WITH_AUTHOR, author_id, published, page))
        rows, cursor = page_rows(result, page.limit)
    tags = _list_tags(author_id, published, first_page=page.after is None)
    tags.update(*(_shown(row) for row in rows))
    items = [_with_author(row) for row in rows]
    return cached(PostPage.model_validate({"items": items, "next_cursor": cursor}), tags)


# Writes: each declares what it changes; the session invalidates it after the commit.


async def create_post(session: AsyncSession, data: PostCreate) -> Post:
    return (await create_posts(session, [data]))[0]


async def create_posts(session: AsyncSession, batch: Iterable[PostCreate]) -> list[Post]:
    """One multi-row ``INSERT ... VALUES (...), (...) RETURNING`` for the whole batch.

    One round trip instead of one per row. Ids grow in VALUES order on both databases,
    so sorting the returned rows by id gives them back in the order they were sent.
    """
    stmt = insert(posts).values([item.model_dump() for item in batch]).returning(*POST_COLUMNS)
    try:
        rows = sorted((await session.execute(stmt)).all(), key=lambda row: row.id)
    except IntegrityError as exc:
        raise UnknownUser("author_id") from exc
    for row in rows:
        invalidate_on_commit(session, *_new_post_tags(row.author_id, row.published))
    return [Post.model_validate(row._mapping) for row in rows]


async def update_post(session: AsyncSession, post_id: int, data: PostUpdate) -> Post:
    was_published = await session.scalar(PUBLISHED_FOR_UPDATE, {"post_id": post_id})
    if was_published is None:
        raise PostNotFound(post_id)
    row = (await session.execute(UPDATE_POST, {"post_id": post_id, **data.model_dump()})).one()
    invalidate_on_commit(session, post_tag(post_id))
    if row.published != was_published:
        invalidate_on_commit(session, *_published_flip_tags(row.author_id, row.published))
    return Post.model_validate(row._mapping)


async def delete_post(session: AsyncSession, post_id: int) -> None:
    """Deletes the post's comments too (ON DELETE CASCADE)."""
    stmt = delete(posts).where(posts.c.id == post_id).returning(posts.c.author_id)
    author_id = (await session.execute(stmt)).scalar()
    if author_id is None:
        raise PostNotFound(post_id)
    tags = (post_tag(post_id), authored_posts_tag(author_id), approved_comments_tag(post_id))
    invalidate_on_commit(session, *tags)


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
        batch = _page(EXPORTED, author_id, published, PageParams(batch_size, after))
        rows, cursor = page_rows(await connection.execute(*batch), batch_size)
        if rows:
            yield b"".join(encode(Post.model_validate(row)) + b"\n" for row in rows)
        if cursor is None:
            return
        after = decode_cursor(cursor)
