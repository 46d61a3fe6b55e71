"""Users as the example blog's authors: each one's post count, and what deleting one takes.

The post count is a correlated subquery served by the ``posts (author_id, ...)`` index; a
JOIN + GROUP BY made PostgreSQL scan every post. Reads that show it carry
``authored_posts_tag``, which the posts domain invalidates when a user's posts change.

Deleting a user deletes their posts and comments (ON DELETE CASCADE, indexed foreign keys),
which changes comment lists that no tag of the user covers: ``cascaded_tags`` names them.
"""

from sqlalchemy import func, select, true
from sqlalchemy.ext.asyncio import AsyncSession

from ..comments.models import Comment, approved_comments_tag, comment_count_tag
from ..posts.models import Post
from .models import User

users = User.__table__
posts = Post.__table__
comments = Comment.__table__

post_count = (
    select(func.count())
    .where(posts.c.author_id == users.c.id)
    .scalar_subquery()
    .label("post_count")
)


async def cascaded_tags(session: AsyncSession, user_id: int) -> set[str]:
    """What deleting the user changes besides the user, read before the cascade removes it.

    The comment lists of the user's posts go, and so do the user's approved comments on
    other people's posts, with those posts' comment counts.
    """
    own_posts = select(posts.c.id).where(posts.c.author_id == user_id)
    commented = select(comments.c.post_id).where(
        comments.c.author_id == user_id, comments.c.is_approved == true()
    )
    post_ids = (await session.execute(own_posts.union(commented))).scalars().all()
    return {*map(approved_comments_tag, post_ids), *map(comment_count_tag, post_ids)}
