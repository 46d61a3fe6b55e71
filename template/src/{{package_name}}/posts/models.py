from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import ForeignKey, Index, String, Text, false
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ..core.models_base import Base, BigIntId, UtcDateTime, utcnow

if TYPE_CHECKING:
    from ..comments.models import Comment
    from ..users.models import User


class Post(Base):
    __tablename__ = "posts"

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    author_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    title: Mapped[str] = mapped_column(String(200))
    body: Mapped[str] = mapped_column(Text)
    published: Mapped[bool] = mapped_column(default=False, server_default=false())
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)

    # lazy="raise": touching an unloaded relationship is a bug (an N+1 in the making),
    # so it fails loudly instead of issuing one query per row.
    author: Mapped["User"] = relationship(lazy="raise")
    comments: Mapped[list["Comment"]] = relationship(
        back_populates="post", lazy="raise", passive_deletes=True
    )


# An author's posts, filtered on published, newest first. Leading with author_id it also
# indexes the foreign key (cascading deletes and the per-user post count use it).
Index(
    "ix_posts_author_id_published_created_at",
    Post.author_id,
    Post.published,
    Post.created_at.desc(),
    Post.id.desc(),
)
# The feed across all authors pages on (created_at, id) alone.
Index("ix_posts_created_at", Post.created_at.desc(), Post.id.desc())


def post_tag(post_id: int) -> str:
    """Cache tag of the post's own fields: every cached read that shows them carries it."""
    return f"post:{post_id}"


def authored_posts_tag(author_id: int) -> str:
    """Cache tag of which posts a user wrote: reads showing their post count carry it."""
    return f"user:{author_id}:posts"
