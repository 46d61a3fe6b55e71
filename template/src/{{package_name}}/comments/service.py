"""Comments: queries served by ``(post_id, is_approved, created_at)``, and their cache tags.

New comments wait for moderation (``is_approved`` false): no reader sees them, so creating
one changes nothing cached. What readers see is a post's approved comments (the cached list
below) and their count (shown with the post): a write changes those only when it touches an
approved comment or changes whether one is approved. The moderation queue is read fresh.
"""

from typing import Any

from sqlalchemy import Select, bindparam, delete, exists, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession

from ..core.cache import Cached, cached
from ..core.deps import invalidate_on_commit
from ..core.errors import NotFound
from ..core.pagination import PageParams, keyset_page, page_rows
from ..posts.models import Post
from ..posts.service import PostNotFound, UnknownUser
from .models import Comment as CommentRow
from .models import approved_comments_tag, comment_count_tag
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


# Built once, with the values as parameters: building a statement costs SQLAlchemy more
# than the database takes to run it, and every new comment runs these two.
POST_EXISTS = select(exists().where(posts.c.id == bindparam("post_id")))
INSERT_COMMENT = insert(comments).returning(*COMMENT_COLUMNS)


class CommentNotFound(NotFound):
    def __init__(self, comment_id: int) -> None:
        super().__init__(f"Comment {comment_id} does not exist.")


def list_comments_query(post_id: int, is_approved: bool, page: PageParams) -> Select[Any]:
    stmt = select(*COMMENT_COLUMNS).where(
        comments.c.post_id == post_id, comments.c.is_approved == is_approved
    )
    return keyset_page(stmt, comments.c.created_at, comments.c.id, page)


async def _post_exists(conn: AsyncConnection | AsyncSession, post_id: int) -> bool:
    return bool(await conn.scalar(POST_EXISTS, {"post_id": post_id}))


async def list_comments(
    engine: AsyncEngine, post_id: int, is_approved: bool, page: PageParams
) -> CommentPage:
    async with engine.connect() as conn:
        result = await conn.execute(list_comments_query(post_id, is_approved, page))
        rows, cursor = page_rows(result, page.limit)
        # An empty first page is the only case where a missing post and a post without
        # comments look alike: only then is the extra lookup worth it.
        if not rows and page.after is None and not await _post_exists(conn, post_id):
            raise PostNotFound(post_id)
    return CommentPage.model_validate({"items": rows, "next_cursor": cursor})


async def list_approved_comments(engine: AsyncEngine, post_id: int, page: PageParams) -> Cached:
    """The page readers see. Approval can move a comment into any page, so each carries the
    tag of the post's approved comments."""
    comment_page = await list_comments(engine, post_id, True, page)
    return cached(comment_page, {approved_comments_tag(post_id)})


async def get_comment(engine: AsyncEngine, comment_id: int) -> Comment:
    async with engine.connect() as conn:
        stmt = select(*COMMENT_COLUMNS).where(comments.c.id == comment_id)
        row = (await conn.execute(stmt)).first()
    if row is None:
        raise CommentNotFound(comment_id)
    return Comment.model_validate(row._mapping)


async def create_comment(session: AsyncSession, post_id: int, data: CommentCreate) -> Comment:
    """Waits for approval: no cached read shows it yet, so it invalidates nothing."""
    if not await _post_exists(session, post_id):
        raise PostNotFound(post_id)
    values = {"post_id": post_id, **data.model_dump()}
    try:
        row = (await session.execute(INSERT_COMMENT, values)).one()
    except IntegrityError as exc:
        raise UnknownUser("author_id") from exc
    return Comment.model_validate(row._mapping)


async def update_comment(session: AsyncSession, comment_id: int, data: CommentUpdate) -> Comment:
    before = select(comments.c.is_approved).where(comments.c.id == comment_id).with_for_update()
    was_approved = (await session.execute(before)).scalar()
    if was_approved is None:
        raise CommentNotFound(comment_id)
    stmt = (
        update(comments)
        .where(comments.c.id == comment_id)
        .values(**data.model_dump())
        .returning(*COMMENT_COLUMNS)
    )
    row = (await session.execute(stmt)).one()
    if was_approved or row.is_approved:
        invalidate_on_commit(session, approved_comments_tag(row.post_id))
    if was_approved != row.is_approved:
        invalidate_on_commit(session, comment_count_tag(row.post_id))
    return Comment.model_validate(row._mapping)


async def delete_comment(session: AsyncSession, comment_id: int) -> None:
    stmt = (
        delete(comments)
        .where(comments.c.id == comment_id)
        .returning(comments.c.post_id, comments.c.is_approved)
    )
    row = (await session.execute(stmt)).first()
    if row is None:
        raise CommentNotFound(comment_id)
    if row.is_approved:
        invalidate_on_commit(
            session, approved_comments_tag(row.post_id), comment_count_tag(row.post_id)
        )
