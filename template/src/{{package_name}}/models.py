"""Every table, imported in one place so ``Base.metadata`` is complete.

Alembic's autogenerate and ``alembic check`` compare the migrations against this
metadata, and the relationships between domains resolve once all classes are mapped.
"""

from .comments.models import Comment
from .core.models_base import Base
from .posts.models import Post
from .users.models import User

__all__ = ["Base", "Comment", "Post", "User"]
