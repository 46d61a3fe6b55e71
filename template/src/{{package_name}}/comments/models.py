from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import ForeignKey, Index, Text, false
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ..core.models_base import Base, BigIntId, UtcDateTime, utcnow

if TYPE_CHECKING:
    from ..posts.models import Post
    from ..users.models import User


class Comment(Base):
    __tablename__ = "comments"

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    post_id: Mapped[int] = mapped_column(ForeignKey("posts.id", ondelete="CASCADE"))
    author_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    body: Mapped[str] = mapped_column(Text)
    is_approved: Mapped[bool] = mapped_column(default=False, server_default=false())
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)

    post: Mapped["Post"] = relationship(back_populates="comments", lazy="raise")
    author: Mapped["User"] = relationship(lazy="raise")


# A post's comments, filtered on is_approved, newest first; leading with post_id it also
# indexes the foreign key and serves the per-post comment count.
Index(
    "ix_comments_post_id_is_approved_created_at",
    Comment.post_id,
    Comment.is_approved,
    Comment.created_at.desc(),
    Comment.id.desc(),
)


def approved_comments_tag(post_id: int) -> str:
    """Cache tag of a post's approved comments, the ones readers see listed."""
    return f"post:{post_id}:comments"


def comment_count_tag(post_id: int) -> str:
    """Cache tag of how many approved comments a post has."""
    return f"post:{post_id}:comment-count"
