from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Body, Query, Response, status
from fastapi.responses import StreamingResponse

from ..core.cache import CacheDep
from ..core.deps import DatabaseDep, SessionDep
from ..core.pagination import PageDep
from . import service
from .schemas import Post, PostBatch, PostCreate, PostPage, PostUpdate, PostWithAuthor

router = APIRouter(prefix="/api/posts", tags=["posts"])

AuthorFilter = Annotated[int | None, Query(description="Only this author's posts")]
PublishedFilter = Annotated[bool | None, Query(description="Only published or draft posts")]
NOT_FOUND = {404: {"description": "No such post"}}
UNKNOWN_AUTHOR = {422: {"description": "Invalid input, or author_id names no user"}}


@router.get("", response_model=PostPage)
async def list_posts(
    database: DatabaseDep,
    cache: CacheDep,
    page: PageDep,
    author_id: AuthorFilter = None,
    published: PublishedFilter = None,
) -> Response:
    """Newest first, each with its author and approved-comment count, in one query.

    Answered from the cache as encoded JSON; concurrent misses share one query.
    """
    body = await cache.get_or_load(
        service.list_key(author_id, published, page),
        lambda: service.list_posts_json(database.engine, author_id, published, page),
        tags=service.LIST_TAGS,
    )
    return Response(body, media_type="application/json")


@router.post("", status_code=status.HTTP_201_CREATED, responses=UNKNOWN_AUTHOR)
async def create_post(session: SessionDep, cache: CacheDep, data: PostCreate) -> Post:
    post = await service.create_post(session, data)
    await session.commit()
    await cache.invalidate_tags(service.LISTS_TAG)
    return post


@router.post("/batch", status_code=status.HTTP_201_CREATED, responses=UNKNOWN_AUTHOR)
async def create_posts(
    session: SessionDep, cache: CacheDep, batch: Annotated[PostBatch, Body()]
) -> list[Post]:
    """Up to 1,000 posts in one multi-row INSERT; all or nothing."""
    posts = await service.create_posts(session, batch)
    await session.commit()
    await cache.invalidate_tags(service.LISTS_TAG)
    return posts


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
        async with database.engine.connect() as connection:
            async for chunk in service.export_posts(connection, author_id, published):
                yield chunk

    return StreamingResponse(body(), media_type="application/x-ndjson")


@router.get("/{post_id}", responses=NOT_FOUND, response_model=PostWithAuthor)
async def get_post(database: DatabaseDep, cache: CacheDep, post_id: int) -> Response:
    """Answered from the cache as encoded JSON; a 404 is not cached."""
    body = await cache.get_or_load(
        service.post_key(post_id),
        lambda: service.get_post_json(database.engine, post_id),
        tags=service.POST_TAGS,
    )
    return Response(body, media_type="application/json")


# Writes commit, then invalidate: a read missing in between would otherwise put the old
# row back in the cache.


@router.put("/{post_id}", responses=NOT_FOUND)
async def update_post(session: SessionDep, cache: CacheDep, post_id: int, data: PostUpdate) -> Post:
    post = await service.update_post(session, post_id, data)
    await session.commit()
    await cache.invalidate(service.post_key(post_id), tags=[service.LISTS_TAG])
    return post


@router.delete("/{post_id}", status_code=status.HTTP_204_NO_CONTENT, responses=NOT_FOUND)
async def delete_post(session: SessionDep, cache: CacheDep, post_id: int) -> None:
    """Also deletes the post's comments."""
    await service.delete_post(session, post_id)
    await session.commit()
    await cache.invalidate(service.post_key(post_id), tags=[service.LISTS_TAG])
