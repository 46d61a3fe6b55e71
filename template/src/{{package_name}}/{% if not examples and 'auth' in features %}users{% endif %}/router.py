from typing import Annotated

from fastapi import APIRouter, Query, Request, Response, status

from ..core.cache import CacheDep
from ..core.deps import DatabaseDep, SessionDep
from ..core.edgecache import cached_response
from ..core.fields import Id
from ..core.pagination import PageDep
from . import service
from .schemas import User, UserCreate, UserPage, UserUpdate

router = APIRouter(prefix="/api/users", tags=["users"])


@router.get("", response_model=UserPage)
async def list_users(
    request: Request,
    database: DatabaseDep,
    cache: CacheDep,
    page: PageDep,
    is_active: Annotated[bool | None, Query(description="Only active or inactive users")] = None,
) -> Response:
    """Newest first, in one query; cached."""
    read = await cache.get_or_load(
        f"users?is_active={is_active}&{page}",
        lambda: service.list_users(database.engine, is_active, page),
    )
    return cached_response(request, read)


@router.post(
    "", status_code=status.HTTP_201_CREATED, responses={409: {"description": "E-mail taken"}}
)
async def create_user(session: SessionDep, data: UserCreate) -> User:
    return await service.create_user(session, data)


@router.get("/{user_id}", response_model=User, responses={404: {"description": "No such user"}})
async def get_user(
    request: Request, database: DatabaseDep, cache: CacheDep, user_id: Id
) -> Response:
    read = await cache.get_or_load(
        f"user:{user_id}", lambda: service.get_user(database.engine, user_id)
    )
    return cached_response(request, read)


@router.put(
    "/{user_id}",
    responses={404: {"description": "No such user"}, 409: {"description": "E-mail taken"}},
)
async def update_user(session: SessionDep, user_id: Id, data: UserUpdate) -> User:
    return await service.update_user(session, user_id, data)


@router.delete(
    "/{user_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={404: {"description": "No such user"}},
)
async def delete_user(session: SessionDep, user_id: Id) -> None:
    """Also deletes the user's password: their tokens stop working."""
    await service.delete_user(session, user_id)
