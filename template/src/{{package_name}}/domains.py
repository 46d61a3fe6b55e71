"""The project's domains: their routers, in the order requests try them.

This module is yours. `copier update` never rewrites it (``_skip_if_exists`` in the
template), so the domains you add stay registered through template updates, and
``fastapi-easy add resource`` registers each new resource here. Keep the most-read router
first: FastAPI tries the routes in order, and every route tried in vain is paid again by
each request behind it. Importing a router imports its models, which is how ``models.py``
(and so Alembic) sees every table.
"""

from fastapi import APIRouter

from .comments.router import router as comments_router
from .posts.router import router as posts_router
from .users.router import router as users_router

ROUTERS: list[APIRouter] = [
    posts_router,
    comments_router,
    users_router,
]
