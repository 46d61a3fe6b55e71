"""Users: the queries, and what each read shows and each write changes, for the cache.

Reads select exactly the columns the response needs and hand the rows to Pydantic: no ORM
objects are built, which is most of the CPU an ORM read costs. Cached reads carry the tags
of the users they show (``user_tag``, also what auth's cached token checks carry). List
pages: a new user enters first pages only, and one whose ``is_active`` flips can enter any
page of the lists filtered on it.
"""

from typing import Any

from sqlalchemy import Select, delete, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from ..core.cache import Cached, cached
from ..core.deps import invalidate_on_commit
from ..core.errors import Conflict, NotFound
from ..core.pagination import PageParams, keyset_page, next_cursor
from .models import User as UserRow
from .models import user_tag
from .schemas import User, UserCreate, UserPage, UserUpdate

users = UserRow.__table__


class UserNotFound(NotFound):
    def __init__(self, user_id: int) -> None:
        super().__init__(f"User {user_id} does not exist.")


class EmailTaken(Conflict):
    def __init__(self, email: str) -> None:
        super().__init__(f"A user with e-mail {email} already exists.")


USER_COLUMNS = (users.c.id, users.c.email, users.c.name, users.c.is_active, users.c.created_at)
GET_USERS = select(*USER_COLUMNS)


def list_users_query(is_active: bool | None, page: PageParams) -> Select[Any]:
    stmt = GET_USERS
    if is_active is not None:
        stmt = stmt.where(users.c.is_active == is_active)
    return keyset_page(stmt, users.c.created_at, users.c.id, page)


def _first_page_tag(is_active: bool | None) -> str:
    """The first pages of a list: where a new user enters it."""
    return f"users:first:{is_active}"


def _filtered_tag(is_active: bool) -> str:
    """Every page of a list filtered on ``is_active``: a user whose flag flips enters anywhere."""
    return f"users:active={is_active}"


def _list_tags(is_active: bool | None, first_page: bool) -> set[str]:
    tags = {_first_page_tag(is_active)} if first_page else set()
    if is_active is not None:
        tags.add(_filtered_tag(is_active))
    return tags


async def get_user(engine: AsyncEngine, user_id: int) -> Cached:
    async with engine.connect() as conn:
        row = (await conn.execute(GET_USERS.where(users.c.id == user_id))).first()
    if row is None:
        raise UserNotFound(user_id)
    return cached(User.model_validate(row._mapping), {user_tag(row.id)})


async def list_users(engine: AsyncEngine, is_active: bool | None, page: PageParams) -> Cached:
    async with engine.connect() as conn:
        rows = list(await conn.execute(list_users_query(is_active, page)))
    cursor = next_cursor(rows, page.limit)
    tags = _list_tags(is_active, first_page=page.after is None)
    tags.update(user_tag(row.id) for row in rows)
    items = [User.model_validate(row._mapping) for row in rows]
    return cached(UserPage(items=items, next_cursor=cursor), tags)


async def create_user(session: AsyncSession, data: UserCreate) -> User:
    stmt = insert(users).values(**data.model_dump()).returning(*USER_COLUMNS)
    try:
        row = (await session.execute(stmt)).one()
    except IntegrityError as exc:
        raise EmailTaken(data.email) from exc
    invalidate_on_commit(session, _first_page_tag(None), _first_page_tag(row.is_active))
    return User.model_validate(row._mapping)


async def update_user(session: AsyncSession, user_id: int, data: UserUpdate) -> User:
    before = select(users.c.is_active).where(users.c.id == user_id).with_for_update()
    was_active = (await session.execute(before)).scalar()
    if was_active is None:
        raise UserNotFound(user_id)
    stmt = (
        update(users)
        .where(users.c.id == user_id)
        .values(**data.model_dump())
        .returning(*USER_COLUMNS)
    )
    try:
        row = (await session.execute(stmt)).one()
    except IntegrityError as exc:
        raise EmailTaken(data.email) from exc
    invalidate_on_commit(session, user_tag(user_id))
    if row.is_active != was_active:
        invalidate_on_commit(session, _filtered_tag(row.is_active))
    return User.model_validate(row._mapping)


async def delete_user(session: AsyncSession, user_id: int) -> None:
    """Deletes the user's credentials too (ON DELETE CASCADE). Reads showing the user, and
    the cached checks of their tokens, carry the user's tag."""
    stmt = delete(users).where(users.c.id == user_id).returning(users.c.id)
    if (await session.execute(stmt)).first() is None:
        raise UserNotFound(user_id)
    invalidate_on_commit(session, user_tag(user_id))
