"""The example blog's part of the users domain: post counts in the reads, and deletion
cascading to the user's posts."""

import httpx
from fastapi import FastAPI

from .factories import insert_posts, insert_users


async def test_a_new_user_reads_with_no_posts(app: FastAPI, client: httpx.AsyncClient) -> None:
    [user_id] = await insert_users(app.state.db.engine, 1)
    response = await client.get(f"/api/users/{user_id}")
    assert response.status_code == 200
    assert response.json()["post_count"] == 0


async def test_delete_a_user_deletes_their_posts(app: FastAPI, client: httpx.AsyncClient) -> None:
    [user_id] = await insert_users(app.state.db.engine, 1)
    [post_id] = await insert_posts(app.state.db.engine, [user_id], 1)

    assert (await client.delete(f"/api/users/{user_id}")).status_code == 204
    assert (await client.get(f"/api/users/{user_id}")).status_code == 404
    assert (await client.get(f"/api/posts/{post_id}")).status_code == 404


async def test_reads_count_each_users_posts(app: FastAPI, client: httpx.AsyncClient) -> None:
    engine = app.state.db.engine
    writer, lurker = await insert_users(engine, 2)
    await insert_posts(engine, [writer], 3)
    await insert_posts(engine, [writer], 2, published=False)

    response = await client.get("/api/users")
    assert response.status_code == 200
    counts = {user["id"]: user["post_count"] for user in response.json()["items"]}
    assert counts == {writer: 5, lurker: 0}
    assert (await client.get(f"/api/users/{writer}")).json()["post_count"] == 5
