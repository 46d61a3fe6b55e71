from typing import Annotated

from fastapi import APIRouter, Query, status

from ..core.cache import CacheDep
from ..core.deps import DatabaseDep, SessionDep
from ..core.pagination import PageDep
from ..posts.service import commit_and_refresh_posts
from . import service
from .schemas import User, UserCreate, UserPage, UserUpdate, UserWithPostCount

router = APIRouter(prefix="/api/users", tags=["users"])


@router.get("")
async def list_users(
    database: DatabaseDep,
    page: PageDep,
    is_active: Annotated[bool | None, Query(description="Only active or inactive users")] = None,
) -> UserPage:
    """Newest first, each with the number of posts they wrote, in one query."""
    return await service.list_users(database.engine, is_active, page)


@router.post(
    "", status_code=status.HTTP_201_CREATED, responses={409: {"description": "E-mail taken"}}
)
async def create_user(session: SessionDep, data: UserCreate) -> User:
    return await service.create_user(session, data)


@router.get("/{user_id}", responses={404: {"description": "No such user"}})
async def get_user(database: DatabaseDep, user_id: int) -> UserWithPostCount:
    return await service.get_user(database.engine, user_id)


@router.put(
    "/{user_id}",
    responses={404: {"description": "No such user"}, 409: {"description": "E-mail taken"}},
)
async def update_user(session: SessionDep, cache: CacheDep, user_id: int, data: UserUpdate) -> User:
    user = await service.update_user(session, user_id, data)
    await commit_and_refresh_posts(session, cache)
    return user


@router.delete(
    "/{user_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={404: {"description": "No such user"}},
)
async def delete_user(session: SessionDep, cache: CacheDep, user_id: int) -> None:
    """Also deletes the user's posts and comments."""
    await service.delete_user(session, user_id)
    await commit_and_refresh_posts(session, cache)
