"""This repository's own benchmark scripts, run end to end at a tiny scale."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.before_after import AS_SHIPPED, FIGURES, RAW, SERVER_ENV, serve_naive, table, targets

from .e2e import Server, serve
from .project import REPO_ROOT, Project, render

pytestmark = pytest.mark.e2e


def test_before_after_sweeps_every_variant_and_the_naive_app(tmp_path: Path) -> None:
    """bench/before_after.py renders, installs, seeds and serves both projects and the naive
    app, and prints the medians of alternating sweeps with the raw ASGI ceiling (and writes
    them, with a plot, to ``--out``). At 64 connections, more than the naive app's thread
    pool, the naive app is slow but answers: it serves the mix's paths and cursors, and does
    not deadlock on its connection pool."""
    command = [
        sys.executable, "-m", "bench.before_after", "--connections", "4,64", "--duration", "2",
        "--warmup", "0", "--runs", "2", "--users", "10", "--posts", "60",
        "--out", str(tmp_path / "out"),
    ]  # fmt: skip
    result = subprocess.run(
        command,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    rows, reads, memory, *list_pages = markdown_tables(result.stdout)
    assert [cell.strip() for cell in rows[0]] == [
        "connections", "variant", "avg ms", "p50 ms", "p95 ms", "p99 ms", "errors", "req/s",
        "x naive",
    ]  # fmt: skip
    cells = {(row[0].strip(), row[1].strip()): [c.strip() for c in row[2:]] for row in rows[1:]}
    assert list(cells) == [
        ("4", "default"),
        ("4", "postgresql-redis"),
        ("4", "naive"),
        ("64", "default"),
        ("64", "postgresql-redis"),
        ("64", "naive"),
        ("100", "raw ASGI app, same bytes"),
    ]
    for key, (_avg, _p50, _p95, _p99, errors, rps, _versus) in cells.items():
        assert errors == "0.00%", key  # so every request counted in req/s succeeded
        assert float(rps.replace(",", "")) > 0, key
    assert "left out" not in result.stderr
    for level in ("4", "64"):
        assert cells[(level, "naive")][-1] == "1.0", "the naive app served requests"
        assert float(cells[(level, "default")][-1]) > 1, "the cached project beats the naive one"
    # The cached read alone, per variant.
    header = [cell.strip() for cell in reads[0]]
    assert header == ["variant", "req/s", "p99 ms", "errors", "x naive", "x raw"]
    by_variant = {row[0].strip(): [c.strip() for c in row[1:]] for row in reads[1:]}
    assert list(by_variant) == ["default", "postgresql-redis", "naive", "raw ASGI app, same bytes"]
    for variant, (rps, _p99, errors, _naive, _raw) in by_variant.items():
        assert errors == "0", variant
        assert float(rps.replace(",", "")) > 0, variant
    assert by_variant["naive"][-2] == "1.0"
    assert float(by_variant["default"][-2]) > 1, "a cached read beats the naive one"
    assert by_variant["raw ASGI app, same bytes"][-1] == "1.00"
    assert float(by_variant["default"][-1]) > 0
    # Each worker's memory, read by the load test (--pid) from /proc.
    assert [cell.strip() for cell in memory[0]] == ["variant", "idle MB", "peak MB"]
    for name, idle, peak in ([c.strip() for c in row] for row in memory[1:]):
        assert 20 < float(idle) <= float(peak) < 1000, name
    assert [row[0].strip() for row in memory[1:]] == ["default", "postgresql-redis", "naive"]
    # The uncached list page against hand-written Core, on each project's database.
    assert len(list_pages) == 2
    for page in list_pages:
        shipped = next(r for r in page if r[0].strip().startswith("generated app, as shipped"))
        assert float(shipped[1].replace(",", "")) > 0
        assert shipped[3].strip() == "0"
    # Each target this run measured, with its figure (no 1,000-connection level here).
    targets = result.stdout[result.stdout.index("Targets:") :]
    assert targets.count("cached `GET /api/posts/1`") == 2
    assert "uncached list page, default (sqlite+aiosqlite)" in targets
    assert "uncached list page, postgresql-redis (postgresql+asyncpg)" in targets
    assert targets.count("memory, ") == 2
    assert targets.count("not measured (not one of the levels)") == 2
    # --out: the same tables, the medians as JSON and the plot.
    out = tmp_path / "out"
    assert markdown_tables((out / "before_after.md").read_text()) == [
        rows,
        reads,
        memory,
        *list_pages,
    ]
    data = json.loads((out / "before_after.json").read_text())
    assert list(data["levels"]) == ["default", "postgresql-redis", "naive"]
    assert list(data["memory_mb"]) == ["default", "postgresql-redis", "naive"]
    assert list(data["list_page"]) == ["default", "postgresql-redis"]
    assert data["cached_read_rps"]["default"] > 0
    assert [level["connections"] for level in data["levels"]["default"]] == [4, 64]
    assert data["ceiling"]["rps"] > 0
    assert (out / "before_after.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


def markdown_tables(text: str) -> list[list[list[str]]]:
    """The rows (header first, the |---| line left out) of each Markdown table in ``text``."""
    tables: list[list[list[str]]] = []
    previous = ""
    for line in text.splitlines():
        if line.startswith("| "):
            if not previous.startswith("|"):
                tables.append([])
            tables[-1].append(line.split("|")[1:-1])
        previous = line
    return tables


def pages(server: Server, query: str) -> list[object]:
    """Every item of a post list, reached through its cursors."""
    items: list[object] = []
    page = server.get(f"/api/posts?limit=20{query}").json()
    while True:
        assert isinstance(page, dict)
        items += page["items"]
        if page["next_cursor"] is None:
            return items
        page = server.get(f"/api/posts?limit=20{query}&cursor={page['next_cursor']}").json()


def test_naive_app_serves_the_projects_contract(template_repo: Path, tmp_path: Path) -> None:
    """The naive app answers the load test's mix with the generated project's paths, JSON and
    paging, so its errors under load are overload, not a different API: the same post, the
    same pages through its own cursors, the same fields back from every write."""
    project = Project(
        render(
            template_repo, tmp_path / "bench", {"project_name": "Bench", "python_version": "3.11"}
        )
    )
    project.sync("3.11")
    database = tmp_path / "bench.db"
    env = {**SERVER_ENV, "DATABASE_URL": f"sqlite+aiosqlite:///{database}"}
    project.uv("bench-seed", "--users", "5", "--posts", "45", "--comments", "135", env=env)
    bench = [str(project.path / ".venv" / "bin" / "bench")]
    with serve(project, bench, env) as fast, serve_naive(project, database) as naive:
        for post in ("/api/posts/1", "/api/posts/45"):
            assert naive.get(post).json() == fast.get(post).json(), post
        assert naive.get("/api/posts/999").status == fast.get("/api/posts/999").status == 404
        for query in ("", "&author_id=1", "&published=true"):
            assert pages(naive, query) == pages(fast, query), query
        writes = [
            ("PUT", "/api/posts/1", {"title": "Edited", "body": "Edited.", "published": True}),
            ("POST", "/api/posts", {"author_id": 2, "title": "New", "body": "A new post."}),
            ("POST", "/api/posts/3/comments", {"author_id": 4, "body": "Nice post."}),
        ]
        for method, path, body in writes:
            answers = [server.request(method, path, body) for server in (fast, naive)]
            assert answers[0].status == answers[1].status, path
            shapes = [sorted(answer.json()) for answer in answers]  # type: ignore[arg-type]
            assert shapes[0] == shapes[1], path


def test_before_after_table_keeps_a_variant_whose_every_sweep_failed() -> None:
    """A variant with no sweep left (each one failed, and was reported on stderr) keeps its
    rows, saying so, and the others are compared without it."""
    level = dict.fromkeys(FIGURES, 1.0) | {"rps": 500.0, "error_rate": 0.0}
    run = {"levels": [level], "ceiling": level | {"connections": 100}}
    rows = table({"default": [run], "naive": []}, [4]).splitlines()
    assert rows[2] == "| 4 | default | 1.0 | 1.0 | 1.0 | 1.0 | 0.00% | 500 | - |"
    assert rows[3] == "| 4 | naive | every sweep failed |||||||"
    assert rows[4].startswith("| 100 | raw ASGI app, same bytes |")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--connections", "ten"], "--connections takes counts"),
        (["--connections", "10,0"], "must be at least 1"),
        (["--runs", "0"], "must be at least 1"),
        (["--variants", "fast"], "invalid choice: 'fast'"),
    ],
)
def test_before_after_rejects_bad_arguments(args: list[str], message: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bench.before_after", *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert message in result.stderr


def test_before_after_targets_say_met_or_not_met_with_each_figure() -> None:
    level = dict.fromkeys(FIGURES, 0.0) | {"connections": 1000}
    per_variant = {
        "default": [level | {"p99_ms": 180.0}],
        "postgresql-redis": [level | {"p99_ms": 260.0}],
    }
    reads = {"default": 20_000.0, "postgresql-redis": 1_500.0, "naive": 200.0, RAW: 30_000.0}
    memory = {
        "default": {"idle": 80.0, "peak": 140.0},
        "postgresql-redis": {"idle": 90, "peak": 160},
    }
    page = {"database": "sqlite+aiosqlite", "rows": {AS_SHIPPED: {"vs_core": -0.02}}}
    lines = targets(per_variant, reads, memory, {"default": page}).splitlines()
    assert lines == [
        "- cached `GET /api/posts/1`, default: 100.0x the naive app (target 10x), 0.67x the raw "
        "ASGI app (target 0.5x): met",
        "- cached `GET /api/posts/1`, postgresql-redis: 7.5x the naive app (target 10x), 0.05x "
        "the raw ASGI app (target 0.5x): **not met**",
        "- uncached list page, default (sqlite+aiosqlite): -2.0% against hand-written Core behind "
        "the same middleware (target: at least Core speed): **not met**",
        "- 1,000 connections, default: p99 180 ms (target under 250), errors 0.00% (target none): "
        "met",
        "- 1,000 connections, postgresql-redis: p99 260 ms (target under 250), errors 0.00% "
        "(target none): **not met**",
        "- memory, default: 80 MB idle (target under 120), 140 MB at the peak (target under 150): "
        "met",
        "- memory, postgresql-redis: 90 MB idle (target under 120), 160 MB at the peak (target "
        "under 150): **not met**",
    ]
