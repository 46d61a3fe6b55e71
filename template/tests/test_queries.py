"""No N+1: every list endpoint sends the same statements for a page of 1, 10 or 100 rows."""

import httpx
import pytest
from fastapi import FastAPI

from .conftest import CountStatements
from .factories import insert_comments, insert_posts, insert_users

PAGE_SIZES = (1, 10, 100)


@pytest.fixture
async def data(app: FastAPI) -> dict[str, int]:
    """Enough rows for full pages of 100 on every list, each row with related rows to count."""
    engine = app.state.db.engine
    user_ids = await insert_users(engine, 120)
    post_ids = await insert_posts(engine, user_ids, 240)
    await insert_comments(engine, post_ids, user_ids[0], 480)
    await insert_comments(engine, [post_ids[0]], user_ids[0], 120)
    return {"author_id": user_ids[0], "post_id": post_ids[0]}


@pytest.mark.parametrize(
    ("path", "filters", "available"),
    [
        ("/api/users", {}, 120),
        ("/api/users", {"is_active": "true"}, 120),
        ("/api/posts", {}, 240),
        ("/api/posts", {"published": "true"}, 240),
        ("/api/posts", {"author_id": "{author_id}"}, 2),
        ("/api/posts/{post_id}/comments", {}, 122),
    ],
)
async def test_list_statements_do_not_grow_with_page_size(
    client: httpx.AsyncClient,
    count_statements: CountStatements,
    data: dict[str, int],
    path: str,
    filters: dict[str, str],
    available: int,
) -> None:
    url = path.format(**data)
    params = {name: value.format(**data) for name, value in filters.items()}
    counts = []
    for limit in PAGE_SIZES:
        with count_statements() as statements:
            response = await client.get(url, params={**params, "limit": limit})
        assert response.status_code == 200
        assert len(response.json()["items"]) == min(limit, available)
        counts.append(len(statements))
    assert counts == [1, 1, 1], counts


async def test_next_page_costs_the_same(
    client: httpx.AsyncClient, count_statements: CountStatements, data: dict[str, int]
) -> None:
    first = (await client.get("/api/posts", params={"limit": 10})).json()
    with count_statements() as statements:
        second = await client.get(
            "/api/posts", params={"limit": 10, "cursor": first["next_cursor"]}
        )
    assert second.status_code == 200
    assert len(statements) == 1
    assert not {p["id"] for p in first["items"]} & {p["id"] for p in second.json()["items"]}
