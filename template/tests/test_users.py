import httpx
import pytest
from fastapi import FastAPI

from .factories import insert_posts, insert_users


async def create_user(client: httpx.AsyncClient, email: str, name: str = "Ada") -> dict:
    response = await client.post("/api/users", json={"email": email, "name": name})
    assert response.status_code == 201, response.text
    return response.json()


async def test_create_and_read_a_user(client: httpx.AsyncClient) -> None:
    created = await create_user(client, " Ada@Example.COM ", "Ada Lovelace")
    assert created["email"] == "ada@example.com"
    assert created["is_active"] is True
    assert created["created_at"].endswith(("Z", "+00:00"))

    response = await client.get(f"/api/users/{created['id']}")
    assert response.status_code == 200
    assert response.json() == {**created, "post_count": 0}


async def test_duplicate_email_is_a_conflict(client: httpx.AsyncClient) -> None:
    await create_user(client, "ada@example.com")
    response = await client.post("/api/users", json={"email": "ADA@example.com", "name": "Other"})
    assert response.status_code == 409
    assert "ada@example.com" in response.json()["detail"]


@pytest.mark.parametrize(
    "body",
    [
        {"email": "not-an-email", "name": "Ada"},
        {"email": "ada@example.com", "name": ""},
        {"email": "ada@example.com"},
        {"email": "ada@example.com", "name": "Ada", "is_admin": True},
    ],
)
async def test_invalid_input_is_422(client: httpx.AsyncClient, body: dict) -> None:
    response = await client.post("/api/users", json=body)
    assert response.status_code == 422


async def test_unknown_user_is_404(client: httpx.AsyncClient) -> None:
    for response in (
        await client.get("/api/users/999999"),
        await client.put("/api/users/999999", json={"email": "x@example.com", "name": "X"}),
        await client.delete("/api/users/999999"),
    ):
        assert response.status_code == 404
        assert response.json()["detail"] == "User 999999 does not exist."


async def test_update_a_user(client: httpx.AsyncClient) -> None:
    user = await create_user(client, "ada@example.com")
    response = await client.put(
        f"/api/users/{user['id']}",
        json={"email": "lovelace@example.com", "name": "Ada L.", "is_active": False},
    )
    assert response.status_code == 200
    assert response.json() == {
        **user,
        "email": "lovelace@example.com",
        "name": "Ada L.",
        "is_active": False,
    }


async def test_update_to_a_taken_email_is_a_conflict(client: httpx.AsyncClient) -> None:
    await create_user(client, "ada@example.com")
    grace = await create_user(client, "grace@example.com", "Grace")
    response = await client.put(
        f"/api/users/{grace['id']}", json={"email": "ada@example.com", "name": "Grace"}
    )
    assert response.status_code == 409
    unchanged = await client.get(f"/api/users/{grace['id']}")
    assert unchanged.json()["email"] == "grace@example.com"


async def test_delete_a_user_deletes_their_posts(app: FastAPI, client: httpx.AsyncClient) -> None:
    user = await create_user(client, "ada@example.com")
    [post_id] = await insert_posts(app.state.db.engine, [user["id"]], 1)

    assert (await client.delete(f"/api/users/{user['id']}")).status_code == 204
    assert (await client.get(f"/api/users/{user['id']}")).status_code == 404
    assert (await client.get(f"/api/posts/{post_id}")).status_code == 404


async def test_list_counts_each_users_posts(app: FastAPI, client: httpx.AsyncClient) -> None:
    engine = app.state.db.engine
    writer, lurker = await insert_users(engine, 2)
    await insert_posts(engine, [writer], 3)
    await insert_posts(engine, [writer], 2, published=False)

    response = await client.get("/api/users")
    assert response.status_code == 200
    counts = {user["id"]: user["post_count"] for user in response.json()["items"]}
    assert counts == {writer: 5, lurker: 0}


async def test_keyset_pages_cover_every_user_once_newest_first(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    ids = await insert_users(app.state.db.engine, 7)
    seen: list[int] = []
    cursor = None
    while True:
        params = {"limit": 3} | ({"cursor": cursor} if cursor else {})
        page = (await client.get("/api/users", params=params)).json()
        assert len(page["items"]) <= 3
        seen += [user["id"] for user in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == list(reversed(ids))


async def test_filter_on_is_active(app: FastAPI, client: httpx.AsyncClient) -> None:
    active = await insert_users(app.state.db.engine, 2, is_active=True)
    inactive = await insert_users(app.state.db.engine, 3, is_active=False)
    for value, expected in (("true", active), ("false", inactive)):
        page = (await client.get("/api/users", params={"is_active": value})).json()
        assert sorted(user["id"] for user in page["items"]) == sorted(expected)


@pytest.mark.parametrize(
    "params", [{"cursor": "garbage"}, {"cursor": "WzEsMl0"}, {"limit": 0}, {"limit": "many"}]
)
async def test_bad_page_parameters_are_422(client: httpx.AsyncClient, params: dict) -> None:
    response = await client.get("/api/users", params=params)
    assert response.status_code == 422


async def test_limit_is_capped(app: FastAPI, client: httpx.AsyncClient) -> None:
    app.state.settings.max_page_size = 2
    await insert_users(app.state.db.engine, 3)
    page = (await client.get("/api/users", params={"limit": 1000})).json()
    assert len(page["items"]) == 2
    assert page["next_cursor"] is not None
