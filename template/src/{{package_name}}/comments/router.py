from typing import Annotated

from fastapi import APIRouter, Query, status

from ..core.cache import CacheDep
from ..core.deps import DatabaseDep, SessionDep
from ..core.pagination import PageDep
from ..posts.service import commit_and_refresh_posts
from . import service
from .schemas import Comment, CommentCreate, CommentPage, CommentUpdate

router = APIRouter(prefix="/api", tags=["comments"])

NOT_FOUND = {404: {"description": "No such comment"}}


@router.get("/posts/{post_id}/comments", responses={404: {"description": "No such post"}})
async def list_comments(
    database: DatabaseDep,
    post_id: int,
    page: PageDep,
    is_approved: Annotated[bool, Query(description="Approved (default) or waiting")] = True,
) -> CommentPage:
    """A post's comments, newest first; approved ones unless asked for the moderation queue."""
    return await service.list_comments(database.engine, post_id, is_approved, page)


@router.post(
    "/posts/{post_id}/comments",
    status_code=status.HTTP_201_CREATED,
    responses={404: {"description": "No such post"}, 422: {"description": "Invalid input"}},
)
async def create_comment(
    session: SessionDep, cache: CacheDep, post_id: int, data: CommentCreate
) -> Comment:
    """New comments wait for approval before they are listed."""
    comment = await service.create_comment(session, post_id, data)
    await commit_and_refresh_posts(session, cache)
    return comment


@router.get("/comments/{comment_id}", responses=NOT_FOUND)
async def get_comment(database: DatabaseDep, comment_id: int) -> Comment:
    return await service.get_comment(database.engine, comment_id)


@router.put("/comments/{comment_id}", responses=NOT_FOUND)
async def update_comment(
    session: SessionDep, cache: CacheDep, comment_id: int, data: CommentUpdate
) -> Comment:
    comment = await service.update_comment(session, comment_id, data)
    await commit_and_refresh_posts(session, cache)
    return comment


@router.delete(
    "/comments/{comment_id}", status_code=status.HTTP_204_NO_CONTENT, responses=NOT_FOUND
)
async def delete_comment(session: SessionDep, cache: CacheDep, comment_id: int) -> None:
    await service.delete_comment(session, comment_id)
    await commit_and_refresh_posts(session, cache)
