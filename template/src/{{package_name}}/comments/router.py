from typing import Annotated

from fastapi import APIRouter, Query, Request, Response, status

from ..core.cache import CacheDep
from ..core.deps import DatabaseDep, SessionDep
from ..core.edgecache import cached_response
from ..core.fields import Id
from ..core.pagination import PageDep
from . import service
from .schemas import Comment, CommentCreate, CommentPage, CommentUpdate

router = APIRouter(prefix="/api", tags=["comments"])

NOT_FOUND = {404: {"description": "No such comment"}}
NO_POST = {404: {"description": "No such post"}}


@router.get("/posts/{post_id}/comments", response_model=CommentPage, responses=NO_POST)
async def list_comments(
    request: Request,
    database: DatabaseDep,
    cache: CacheDep,
    post_id: Id,
    page: PageDep,
    is_approved: Annotated[bool, Query(description="Approved (default) or waiting")] = True,
) -> Response | CommentPage:
    """A post's comments, newest first; approved ones unless asked for the moderation queue.

    The approved comments are what readers see, and are cached; the queue is read fresh.
    """
    if not is_approved:
        return await service.list_comments(database.reads, post_id, False, page)
    read = await cache.get_or_load(
        f"post:{post_id}:comments?{page}",
        lambda: service.list_approved_comments(database.reads, post_id, page),
    )
    return cached_response(request, read)


@router.post(
    "/posts/{post_id}/comments",
    status_code=status.HTTP_201_CREATED,
    responses={**NO_POST, 422: {"description": "Invalid input"}},
)
async def create_comment(session: SessionDep, post_id: Id, data: CommentCreate) -> Comment:
    """New comments wait for approval before they are listed."""
    return await service.create_comment(session, post_id, data)


@router.get("/comments/{comment_id}", responses=NOT_FOUND)
async def get_comment(database: DatabaseDep, comment_id: Id) -> Comment:
    return await service.get_comment(database.reads, comment_id)


@router.put("/comments/{comment_id}", responses=NOT_FOUND)
async def update_comment(session: SessionDep, comment_id: Id, data: CommentUpdate) -> Comment:
    return await service.update_comment(session, comment_id, data)


@router.delete(
    "/comments/{comment_id}", status_code=status.HTTP_204_NO_CONTENT, responses=NOT_FOUND
)
async def delete_comment(session: SessionDep, comment_id: Id) -> None:
    await service.delete_comment(session, comment_id)
