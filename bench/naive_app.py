"""The "before" of the before/after benchmark: the same API written the naive way.

Everything the generated project avoids, on purpose: ORM objects with lazy loading (the
author and every comment of each post are loaded one query at a time, N+1), no cache,
OFFSET pagination behind the cursor, synchronous sessions on the default pool run in
FastAPI's thread pool, a chain of ``BaseHTTPMiddleware``, FastAPI's default JSON
(``jsonable_encoder`` and the stdlib ``json``) and gzip at level 9. It reads the tables of
a generated project's SQLite database, seeded by that project (``NAIVE_DATABASE_URL``,
``sqlite:///path``), and answers the routes the load test's mix uses with the generated
project's paths, JSON shape and paging contract: ``next_cursor`` is opaque to clients, so
an OFFSET in a string pages the same way a keyset does.

The routes declare no response model, the one thing a naive app usually has that this one
leaves out. FastAPI validates a sync endpoint's response in a second trip to its thread
pool while the session still holds its connection; with more requests in flight than
threads, every thread ends up waiting for a connection held by a request that waits for a
thread, and the app serves nothing until the pool's 30 s timeout fails them all. That
deadlock would make the baseline zero, not slow: without it, the naive app still runs out
of connections and threads under load, and its errors are the overload's.

    NAIVE_DATABASE_URL=sqlite:///b.db uvicorn naive_app:create_app --factory --app-dir bench
"""

import json
import os
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime
from typing import Annotated

from fastapi import Depends, FastAPI, HTTPException, Request, Response
from fastapi.middleware.gzip import GZipMiddleware
from fastapi.responses import StreamingResponse
from pydantic import BaseModel
from sqlalchemy import Boolean, DateTime, ForeignKey, Integer, String, Text, create_engine
from sqlalchemy.orm import (
    DeclarativeBase,
    Mapped,
    Session,
    mapped_column,
    relationship,
    sessionmaker,
)
from starlette.middleware.base import BaseHTTPMiddleware


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100))


class Post(Base):
    __tablename__ = "posts"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    author_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    title: Mapped[str] = mapped_column(String(200))
    body: Mapped[str] = mapped_column(Text)
    published: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime)
    author: Mapped[User] = relationship()  # lazy="select": one query per post
    comments: Mapped[list["Comment"]] = relationship()


class Comment(Base):
    __tablename__ = "comments"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    post_id: Mapped[int] = mapped_column(ForeignKey("posts.id"))
    author_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    body: Mapped[str] = mapped_column(Text)
    is_approved: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime)


class PostUpdate(BaseModel):
    title: str
    body: str
    published: bool = False


class PostCreate(PostUpdate):
    author_id: int


class CommentCreate(BaseModel):
    author_id: int
    body: str


def utc(value: datetime) -> str:
    """The tables store naive UTC text; the API writes it as the project does, ending in Z."""
    return value.isoformat() + "Z"


def post_fields(post: Post) -> dict[str, object]:
    return {
        "id": post.id,
        "author_id": post.author_id,
        "title": post.title,
        "body": post.body,
        "published": post.published,
        "created_at": utc(post.created_at),
    }


def as_dict(post: Post) -> dict[str, object]:
    return {
        **post_fields(post),
        "author": {"id": post.author.id, "name": post.author.name},
        "comment_count": sum(comment.is_approved for comment in post.comments),
    }


def session(request: Request) -> Iterator[Session]:
    with request.app.state.sessions() as db:
        yield db


DB = Annotated[Session, Depends(session)]


def now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


Middleware = Callable[[Request, Callable[[Request], Awaitable[Response]]], Awaitable[Response]]


def middleware_chain() -> list[Middleware]:
    async def request_id(request: Request, call_next: Callable) -> Response:
        response = await call_next(request)
        response.headers["X-Request-ID"] = request.headers.get("x-request-id", uuid.uuid4().hex)
        return response

    async def timing(request: Request, call_next: Callable) -> Response:
        started = time.perf_counter()
        response = await call_next(request)
        response.headers["Server-Timing"] = f"app;dur={(time.perf_counter() - started) * 1000}"
        return response

    async def security_headers(request: Request, call_next: Callable) -> Response:
        response = await call_next(request)
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response

    return [request_id, timing, security_headers]


def create_app() -> FastAPI:
    app = FastAPI()
    app.state.sessions = sessionmaker(create_engine(os.environ["NAIVE_DATABASE_URL"]))
    app.add_middleware(GZipMiddleware, minimum_size=500, compresslevel=9)
    for dispatch in middleware_chain():
        app.add_middleware(BaseHTTPMiddleware, dispatch=dispatch)

    @app.get("/healthz", response_model=None)
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/api/posts", response_model=None)
    def list_posts(
        db: DB,
        limit: int = 20,
        cursor: str | None = None,
        author_id: int | None = None,
        published: bool | None = None,
    ) -> dict[str, object]:
        offset = int(cursor or 0)
        query = db.query(Post)
        if author_id is not None:
            query = query.filter(Post.author_id == author_id)
        if published is not None:
            query = query.filter(Post.published == published)
        posts = query.order_by(Post.created_at.desc(), Post.id.desc())
        page = posts.offset(offset).limit(limit + 1).all()
        more = len(page) > limit
        return {
            "items": [as_dict(post) for post in page[:limit]],
            "next_cursor": str(offset + limit) if more else None,
        }

    @app.get("/api/posts/export")
    def export_posts(db: DB) -> StreamingResponse:
        lines = [
            json.dumps({"id": p.id, "author_id": p.author_id, "published": p.published}) + "\n"
            for p in db.query(Post).all()
        ]
        return StreamingResponse(iter(lines), media_type="application/x-ndjson")

    @app.get("/api/posts/{post_id}", response_model=None)
    def get_post(db: DB, post_id: int) -> dict[str, object]:
        post = db.get(Post, post_id)
        if post is None:
            raise HTTPException(404, "post not found")
        return as_dict(post)

    @app.post("/api/posts", status_code=201, response_model=None)
    def create_post(db: DB, data: PostCreate) -> dict[str, object]:
        post = Post(**data.model_dump(), created_at=now())
        db.add(post)
        db.commit()
        return post_fields(post)

    @app.put("/api/posts/{post_id}", response_model=None)
    def update_post(post_id: int, db: DB, data: PostUpdate) -> dict[str, object]:
        post = db.get(Post, post_id)
        if post is None:
            raise HTTPException(404, "post not found")
        for name, value in data.model_dump().items():
            setattr(post, name, value)
        db.commit()
        return post_fields(post)

    @app.post("/api/posts/{post_id}/comments", status_code=201, response_model=None)
    def create_comment(post_id: int, db: DB, data: CommentCreate) -> dict[str, object]:
        if db.get(Post, post_id) is None:
            raise HTTPException(404, "post not found")
        comment = Comment(post_id=post_id, **data.model_dump(), is_approved=False, created_at=now())
        db.add(comment)
        db.commit()
        return {
            "id": comment.id,
            "post_id": post_id,
            "author_id": comment.author_id,
            "body": comment.body,
            "is_approved": comment.is_approved,
            "created_at": utc(comment.created_at),
        }

    return app
