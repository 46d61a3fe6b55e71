import httpx
import pytest
from fastapi import FastAPI

from .factories import insert_comments, insert_posts, insert_users


@pytest.fixture
async def post_and_author(app: FastAPI) -> tuple[int, int]:
    [user_id] = await insert_users(app.state.db.engine, 1)
    [post_id] = await insert_posts(app.state.db.engine, [user_id], 1)
    return post_id, user_id


async def test_new_comments_wait_for_approval(
    client: httpx.AsyncClient, post_and_author: tuple[int, int]
) -> None:
    post_id, author_id = post_and_author
    url = f"/api/posts/{post_id}/comments"
    response = await client.post(url, json={"author_id": author_id, "body": " Nice post. "})
    assert response.status_code == 201, response.text
    comment = response.json()
    assert comment["body"] == "Nice post."
    assert comment["is_approved"] is False

    assert (await client.get(url)).json()["items"] == []
    waiting = (await client.get(url, params={"is_approved": "false"})).json()["items"]
    assert waiting == [comment]

    response = await client.put(
        f"/api/comments/{comment['id']}", json={"body": "Nice post.", "is_approved": True}
    )
    assert response.status_code == 200
    approved = response.json()
    assert (await client.get(url)).json()["items"] == [approved]
    assert (await client.get(f"/api/comments/{comment['id']}")).json() == approved

    assert (await client.delete(f"/api/comments/{comment['id']}")).status_code == 204
    assert (await client.get(f"/api/comments/{comment['id']}")).status_code == 404


async def test_comment_on_a_missing_post_is_404(
    client: httpx.AsyncClient, post_and_author: tuple[int, int]
) -> None:
    _, author_id = post_and_author
    response = await client.post(
        "/api/posts/999999/comments", json={"author_id": author_id, "body": "Hi"}
    )
    assert response.status_code == 404
    assert response.json()["detail"] == "Post 999999 does not exist."
    assert (await client.get("/api/posts/999999/comments")).status_code == 404


async def test_comment_by_an_unknown_author_is_422(
    client: httpx.AsyncClient, post_and_author: tuple[int, int]
) -> None:
    post_id, _ = post_and_author
    response = await client.post(
        f"/api/posts/{post_id}/comments", json={"author_id": 999999, "body": "Hi"}
    )
    assert response.status_code == 422


@pytest.mark.parametrize("body", [{"body": "Hi"}, {"author_id": 1, "body": ""}, {"author_id": 1}])
async def test_invalid_comment_is_422(
    client: httpx.AsyncClient, post_and_author: tuple[int, int], body: dict
) -> None:
    post_id, _ = post_and_author
    response = await client.post(f"/api/posts/{post_id}/comments", json=body)
    assert response.status_code == 422


async def test_unknown_comment_is_404(client: httpx.AsyncClient) -> None:
    for response in (
        await client.get("/api/comments/999999"),
        await client.put("/api/comments/999999", json={"body": "x", "is_approved": True}),
        await client.delete("/api/comments/999999"),
    ):
        assert response.status_code == 404
        assert response.json()["detail"] == "Comment 999999 does not exist."


async def test_comments_page_newest_first(
    app: FastAPI, client: httpx.AsyncClient, post_and_author: tuple[int, int]
) -> None:
    post_id, author_id = post_and_author
    ids = await insert_comments(app.state.db.engine, [post_id], author_id, 5)
    url = f"/api/posts/{post_id}/comments"
    first = (await client.get(url, params={"limit": 3})).json()
    second = (await client.get(url, params={"limit": 3, "cursor": first["next_cursor"]})).json()
    assert second["next_cursor"] is None
    assert [c["id"] for c in first["items"] + second["items"]] == list(reversed(ids))
