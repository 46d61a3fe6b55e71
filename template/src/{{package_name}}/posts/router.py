from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Body, Query, Request, Response, status
from fastapi.responses import StreamingResponse

from ..core.cache import CacheDep
from ..core.deps import DatabaseDep, SessionDep
from ..core.edgecache import cached_response
from ..core.fields import Id
from ..core.pagination import PageDep
from . import service
from .schemas import Post, PostBatch, PostCreate, PostPage, PostUpdate, PostWithAuthor

router = APIRouter(prefix="/api/posts", tags=["posts"])

AuthorFilter = Annotated[Id | None, Query(description="Only this author's posts")]
PublishedFilter = Annotated[bool | None, Query(description="Only published or draft posts")]
NOT_FOUND = {404: {"description": "No such post"}}
UNKNOWN_AUTHOR = {422: {"description": "Invalid input, or author_id names no user"}}


# Reads answer from the cache: concurrent misses share one query, and the edge cache stores
# the response under the same tags (see service.py for what each read shows).


@router.get("", response_model=PostPage)
async def list_posts(
    request: Request,
    database: DatabaseDep,
    cache: CacheDep,
    page: PageDep,
    author_id: AuthorFilter = None,
    published: PublishedFilter = None,
) -> Response:
    """Newest first, each with its author and approved-comment count, in one query."""
    read = await cache.get_or_load(
        f"posts?author_id={author_id}&published={published}&{page}",
        lambda: service.list_posts(database.reads, author_id, published, page),
    )
    return cached_response(request, read)


@router.post("", status_code=status.HTTP_201_CREATED, responses=UNKNOWN_AUTHOR)
async def create_post(session: SessionDep, data: PostCreate) -> Post:
    return await service.create_post(session, data)


@router.post("/batch", status_code=status.HTTP_201_CREATED, responses=UNKNOWN_AUTHOR)
async def create_posts(session: SessionDep, batch: Annotated[PostBatch, Body()]) -> list[Post]:
    """Up to 1,000 posts in one multi-row INSERT; all or nothing."""
    return await service.create_posts(session, batch)


@router.get(
    "/export",
    response_class=StreamingResponse,
    responses={200: {"content": {"application/x-ndjson": {}}, "description": "One post per line"}},
)
async def export_posts(
    database: DatabaseDep, author_id: AuthorFilter = None, published: PublishedFilter = None
) -> StreamingResponse:
    """Every matching post as NDJSON, streamed in keyset batches with flat memory.

    The stream opens its own connection: a request-scoped session ends before the body is
    sent, and an export must not hold a request transaction open for its whole duration.
    """

    async def body() -> AsyncIterator[bytes]:
        async with database.reads.connect() as connection:
            async for chunk in service.export_posts(connection, author_id, published):
                yield chunk

    return StreamingResponse(body(), media_type="application/x-ndjson")


@router.get("/{post_id}", responses=NOT_FOUND, response_model=PostWithAuthor)
async def get_post(
    request: Request, database: DatabaseDep, cache: CacheDep, post_id: Id
) -> Response:
    read = await cache.get_or_load(
        f"post:{post_id}", lambda: service.get_post(database.reads, post_id)
    )
    return cached_response(request, read)


@router.put("/{post_id}", responses=NOT_FOUND)
async def update_post(session: SessionDep, post_id: Id, data: PostUpdate) -> Post:
    return await service.update_post(session, post_id, data)


@router.delete("/{post_id}", status_code=status.HTTP_204_NO_CONTENT, responses=NOT_FOUND)
async def delete_post(session: SessionDep, post_id: Id) -> None:
    """Also deletes the post's comments."""
    await service.delete_post(session, post_id)
