"""Comments: queries written against the table, served by ``(post_id, is_approved, created_at)``.

New comments wait for moderation (``is_approved`` false); the list shows approved ones
unless asked otherwise.
"""

from functools import cache
from typing import Any

from fastapi import HTTPException, status
from sqlalchemy import Select, bindparam, delete, exists, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession

from ..core.pagination import PageParams, keyset_page, next_cursor, page_values
from ..posts.models import Post
from .models import Comment as CommentRow
from .schemas import Comment, CommentCreate, CommentPage, CommentUpdate

comments = CommentRow.__table__
posts = Post.__table__

COMMENT_COLUMNS = (
    comments.c.id,
    comments.c.post_id,
    comments.c.author_id,
    comments.c.body,
    comments.c.is_approved,
    comments.c.created_at,
)


def _not_found(comment_id: int) -> HTTPException:
    return HTTPException(status.HTTP_404_NOT_FOUND, f"Comment {comment_id} does not exist.")


def _post_not_found(post_id: int) -> HTTPException:
    return HTTPException(status.HTTP_404_NOT_FOUND, f"Post {post_id} does not exist.")


POST_EXISTS = select(exists().where(posts.c.id == bindparam("post_id")))
GET_COMMENT = select(*COMMENT_COLUMNS).where(comments.c.id == bindparam("comment_id"))


async def _post_exists(conn: AsyncConnection | AsyncSession, post_id: int) -> bool:
    return bool(await conn.scalar(POST_EXISTS, {"post_id": post_id}))


@cache
def _list_statement(after: bool) -> Select[Any]:
    """Built once and reused: see ``posts.service``."""
    stmt = select(*COMMENT_COLUMNS).where(
        comments.c.post_id == bindparam("post_id"),
        comments.c.is_approved == bindparam("is_approved"),
    )
    return keyset_page(stmt, comments.c.created_at, comments.c.id, after=after)


def list_comments_query(
    post_id: int, is_approved: bool, page: PageParams
) -> tuple[Select[Any], dict[str, Any]]:
    values = page_values(page) | {"post_id": post_id, "is_approved": is_approved}
    return _list_statement(page.after is not None), values


async def list_comments(
    engine: AsyncEngine, post_id: int, is_approved: bool, page: PageParams
) -> CommentPage:
    async with engine.connect() as conn:
        rows = list(await conn.execute(*list_comments_query(post_id, is_approved, page)))
        # An empty first page is the only case where a missing post and a post without
        # comments look alike: only then is the extra lookup worth it.
        if not rows and page.after is None and not await _post_exists(conn, post_id):
            raise _post_not_found(post_id)
    cursor = next_cursor(rows, page.limit)
    return CommentPage(
        items=[Comment.model_validate(row._mapping) for row in rows], next_cursor=cursor
    )


async def create_comment(session: AsyncSession, post_id: int, data: CommentCreate) -> Comment:
    if not await _post_exists(session, post_id):
        raise _post_not_found(post_id)
    stmt = insert(comments).values(post_id=post_id, **data.model_dump()).returning(*COMMENT_COLUMNS)
    try:
        row = (await session.execute(stmt)).one()
    except IntegrityError as exc:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT, "author_id names no existing user."
        ) from exc
    return Comment.model_validate(row._mapping)


async def get_comment(engine: AsyncEngine, comment_id: int) -> Comment:
    async with engine.connect() as conn:
        row = (await conn.execute(GET_COMMENT, {"comment_id": comment_id})).first()
    if row is None:
        raise _not_found(comment_id)
    return Comment.model_validate(row._mapping)


async def update_comment(session: AsyncSession, comment_id: int, data: CommentUpdate) -> Comment:
    stmt = (
        update(comments)
        .where(comments.c.id == comment_id)
        .values(**data.model_dump())
        .returning(*COMMENT_COLUMNS)
    )
    row = (await session.execute(stmt)).first()
    if row is None:
        raise _not_found(comment_id)
    return Comment.model_validate(row._mapping)


async def delete_comment(session: AsyncSession, comment_id: int) -> None:
    stmt = delete(comments).where(comments.c.id == comment_id).returning(comments.c.id)
    if (await session.execute(stmt)).first() is None:
        raise _not_found(comment_id)
