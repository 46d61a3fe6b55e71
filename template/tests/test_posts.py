import httpx
import pytest
from fastapi import FastAPI

from .conftest import CountStatements
from .factories import insert_comments, insert_posts, insert_users


@pytest.fixture
async def author_id(app: FastAPI) -> int:
    [user_id] = await insert_users(app.state.db.engine, 1)
    return user_id


def post_body(author: int, **overrides: object) -> dict:
    return {"author_id": author, "title": "Hello", "body": "First post.", **overrides}


async def test_create_read_update_delete(client: httpx.AsyncClient, author_id: int) -> None:
    response = await client.post("/api/posts", json=post_body(author_id))
    assert response.status_code == 201, response.text
    post = response.json()
    assert post["published"] is False

    detail = (await client.get(f"/api/posts/{post['id']}")).json()
    assert detail == {**post, "author": {"id": author_id, "name": "User 0"}, "comment_count": 0}

    response = await client.put(
        f"/api/posts/{post['id']}", json={"title": "Hi", "body": "Edited.", "published": True}
    )
    assert response.status_code == 200
    assert response.json() == {**post, "title": "Hi", "body": "Edited.", "published": True}

    assert (await client.delete(f"/api/posts/{post['id']}")).status_code == 204
    assert (await client.get(f"/api/posts/{post['id']}")).status_code == 404


async def test_unknown_author_is_422(client: httpx.AsyncClient) -> None:
    response = await client.post("/api/posts", json=post_body(999999))
    assert response.status_code == 422
    assert "author_id" in response.json()["detail"]


@pytest.mark.parametrize(
    "overrides", [{"title": ""}, {"title": "x" * 201}, {"body": ""}, {"author_id": 0}, {"x": 1}]
)
async def test_invalid_post_is_422(
    client: httpx.AsyncClient, author_id: int, overrides: dict
) -> None:
    response = await client.post("/api/posts", json=post_body(author_id, **overrides))
    assert response.status_code == 422


async def test_unknown_post_is_404(client: httpx.AsyncClient) -> None:
    update = {"title": "t", "body": "b"}
    for response in (
        await client.get("/api/posts/999999"),
        await client.put("/api/posts/999999", json=update),
        await client.delete("/api/posts/999999"),
    ):
        assert response.status_code == 404
        assert response.json()["detail"] == "Post 999999 does not exist."


async def test_batch_insert_is_one_statement(
    client: httpx.AsyncClient, author_id: int, count_statements: CountStatements
) -> None:
    batch = [post_body(author_id, title=f"Post {i}") for i in range(200)]
    with count_statements() as statements:
        response = await client.post("/api/posts/batch", json=batch)
    assert response.status_code == 201, response.text
    created = response.json()
    assert [post["title"] for post in created] == [f"Post {i}" for i in range(200)]
    assert len({post["id"] for post in created}) == 200
    inserts = [s for s in statements if s.lstrip().upper().startswith("INSERT")]
    assert len(inserts) == 1


async def test_batch_is_all_or_nothing(client: httpx.AsyncClient, author_id: int) -> None:
    batch = [post_body(author_id), post_body(999999)]
    response = await client.post("/api/posts/batch", json=batch)
    assert response.status_code == 422
    page = (await client.get("/api/posts", params={"author_id": author_id})).json()
    assert page["items"] == []


@pytest.mark.parametrize("size", [0, 1001])
async def test_batch_size_is_bounded(client: httpx.AsyncClient, author_id: int, size: int) -> None:
    response = await client.post("/api/posts/batch", json=[post_body(author_id)] * size)
    assert response.status_code == 422


async def test_list_has_author_and_approved_comment_count(
    app: FastAPI, client: httpx.AsyncClient, author_id: int
) -> None:
    engine = app.state.db.engine
    quiet, busy = await insert_posts(engine, [author_id], 2)
    await insert_comments(engine, [busy], author_id, 3)
    await insert_comments(engine, [busy], author_id, 4, is_approved=False)

    items = (await client.get("/api/posts")).json()["items"]
    assert [(post["id"], post["comment_count"]) for post in items] == [(busy, 3), (quiet, 0)]
    assert all(post["author"] == {"id": author_id, "name": "User 0"} for post in items)


async def test_filters_and_pages(app: FastAPI, client: httpx.AsyncClient) -> None:
    engine = app.state.db.engine
    ada, grace = await insert_users(engine, 2)
    ada_published = await insert_posts(engine, [ada], 5)
    ada_drafts = await insert_posts(engine, [ada], 2, published=False)
    await insert_posts(engine, [grace], 4)

    async def all_ids(**params: object) -> list[int]:
        ids: list[int] = []
        cursor = None
        while True:
            query = {"limit": 2, **params} | ({"cursor": cursor} if cursor else {})
            page = (await client.get("/api/posts", params=query)).json()
            ids += [post["id"] for post in page["items"]]
            if (cursor := page["next_cursor"]) is None:
                return ids

    assert sorted(await all_ids(author_id=ada)) == sorted(ada_published + ada_drafts)
    assert sorted(await all_ids(author_id=ada, published="true")) == sorted(ada_published)
    assert sorted(await all_ids(author_id=ada, published="false")) == sorted(ada_drafts)
    every = await all_ids()
    assert len(every) == len(set(every)) == 11
