from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from ..core.fields import NOT_BLANK, Id

Body = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=10_000, pattern=NOT_BLANK),
]


class CommentCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    author_id: Id
    body: Body


class CommentUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    body: Body
    is_approved: bool = Field(description="Approved comments are listed and counted")


class Comment(BaseModel):
    id: int
    post_id: int
    author_id: int
    body: str
    is_approved: bool
    created_at: datetime


class CommentPage(BaseModel):
    items: list[Comment]
    next_cursor: str | None = Field(
        default=None, description="Pass as `cursor` for the next page; null on the last page"
    )
