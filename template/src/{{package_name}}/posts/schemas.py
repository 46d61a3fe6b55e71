from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from ..core.fields import NO_NUL, NOT_BLANK, Id

Title = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200, pattern=NOT_BLANK)
]
Body = Annotated[str, StringConstraints(min_length=1, max_length=100_000, pattern=NO_NUL)]

MAX_BATCH = 1000


class PostUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    title: Title
    body: Body
    published: bool = False


class PostCreate(PostUpdate):
    author_id: Id


class Post(BaseModel):
    id: int
    author_id: int
    title: str
    body: str
    published: bool
    created_at: datetime


class Author(BaseModel):
    id: int
    name: str


class PostWithAuthor(Post):
    author: Author
    comment_count: int = Field(description="Approved comments, the ones readers see")


PostBatch = Annotated[list[PostCreate], Field(min_length=1, max_length=MAX_BATCH)]


class PostPage(BaseModel):
    items: list[PostWithAuthor]
    next_cursor: str | None = Field(
        default=None, description="Pass as `cursor` for the next page; null on the last page"
    )
