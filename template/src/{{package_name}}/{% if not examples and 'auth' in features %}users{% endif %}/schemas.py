from datetime import datetime
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from ..core.fields import NOT_BLANK

# Deliberately loose: one "@" and a dot in the domain. Real validation is sending a mail.
Email = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True, max_length=320, pattern=r"^[^@\s\x00]+@[^@\s\x00]+\.[^@\s\x00]+$"
    ),
    AfterValidator(str.lower),
]
Name = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100, pattern=NOT_BLANK)
]


class UserCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    email: Email
    name: Name


class UserUpdate(UserCreate):
    is_active: bool = True


class User(BaseModel):
    id: int
    email: str
    name: str
    is_active: bool
    created_at: datetime


class UserPage(BaseModel):
    items: list[User]
    next_cursor: str | None = Field(
        default=None, description="Pass as `cursor` for the next page; null on the last page"
    )
