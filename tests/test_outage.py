"""Backing services failing under load: PostgreSQL restarted, Redis killed.

A PostgreSQL restart under a write load: clear 503s, no lost write, prompt recovery.

A generated PostgreSQL project serves eight clients that create posts without pause while
its private PostgreSQL is stopped for three seconds and started again. Every answer must be
a 201 or a 503 problem with ``Retry-After`` (never a 500, never a hang), ``/readyz`` must
name the database while it is down, writes must succeed again within seconds, and every
write answered 201 must be in the database afterwards.

Redis killed with SIGKILL under reads and writes through two instances of a cache=redis
project: no request fails (the cache fails open), and once Redis is back, empty, each
instance reads what the other stored in the L2 and sees the other's writes again.
"""

import json
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from .e2e import Response, Server, Traffic, l2_hits, new_post, new_user, serve, uv_run, wait_for
from .project import Project, render
from .servers import postgres_server, redis_server

pytestmark = pytest.mark.e2e

CLIENTS = 8
OUTAGE_S = 3.0
# An answer within this bound: the connect timeout and the pool timeout are both shorter.
SLOWEST_ANSWER_S = 12.0
REDIS_CLIENTS = 6


class Writers:
    """Clients that create posts until stopped, recording every answer."""

    def __init__(self, server: Server, author_id: int) -> None:
        self.server = server
        self.author_id = author_id
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.answers: list[tuple[float, float, Response]] = []  # (sent, took, answer)
        self.acknowledged: list[str] = []

    def run(self, client: int) -> None:
        n = 0
        while not self.stop.is_set():
            title = f"client {client} post {n}"
            n += 1
            body = {"author_id": self.author_id, "title": title, "body": "text"}
            sent = time.monotonic()
            answer = self.server.request("POST", "/api/posts", body)
            with self.lock:
                self.answers.append((sent, time.monotonic() - sent, answer))
                if answer.status == 201:
                    self.acknowledged.append(title)


def test_a_database_restart_under_writes_gives_503s_and_loses_nothing(
    template_repo: Path, tmp_path: Path
) -> None:
    project = Project(
        render(
            template_repo,
            tmp_path / "outage",
            {"project_name": "Outage", "database": "postgresql", "python_version": "3.11"},
        )
    )
    project.sync("3.11")
    with postgres_server() as postgres:
        env = {"DATABASE_URL": postgres.create_database("outage")}
        project.uv("alembic", "upgrade", "head", env=env)
        with serve(project, uv_run("outage"), env=env) as server:
            writers = Writers(server, new_user(server, "a@example.com", "A"))
            threads = [threading.Thread(target=writers.run, args=(i,)) for i in range(CLIENTS)]
            for thread in threads:
                thread.start()
            time.sleep(2)
            postgres.stop("fast")
            stopped = time.monotonic()
            time.sleep(0.5)
            ready = server.get("/readyz")
            time.sleep(OUTAGE_S - 0.5)
            postgres.start()
            started = time.monotonic()
            time.sleep(4)
            writers.stop.set()
            for thread in threads:
                thread.join(60)

            statuses = Counter(answer.status for _, _, answer in writers.answers)
            print(f"\n[outage] answers by status: {dict(statuses)}")
            log = "".join(path.read_text() for path in project.path.glob(".server-*.log"))
            errors = [line for line in log.splitlines() if " ERROR " in line or "Error:" in line]
            assert set(statuses) <= {201, 503}, (statuses, errors[-30:])
            assert statuses[503] > 0, "the outage must have been seen"
            for _, _, answer in writers.answers:
                if answer.status == 503:
                    headers = {name.lower(): value for name, value in answer.headers.items()}
                    assert headers["retry-after"] == "1"
                    assert headers["content-type"] == "application/problem+json"
            slowest = max(took for _, took, _ in writers.answers)
            print(f"[outage] slowest answer: {slowest:.2f} s")
            assert slowest < SLOWEST_ANSWER_S

            assert ready.status == 503
            assert "database" in ready.body.decode()
            recovered = min(
                sent + took
                for sent, took, answer in writers.answers
                if answer.status == 201 and sent >= started
            )
            print(
                f"[outage] first write acknowledged {recovered - started:.2f} s after the restart"
            )
            assert recovered - started < 5
            assert stopped < started

            exported = server.get("/api/posts/export")
            titles = {json.loads(line)["title"] for line in exported.body.splitlines()}
            lost = set(writers.acknowledged) - titles
            print(f"[outage] acknowledged writes: {len(writers.acknowledged)}, lost: {len(lost)}")
            assert not lost


def test_redis_killed_under_load_fails_open_and_l2_and_invalidation_resume(
    template_repo: Path, tmp_path: Path
) -> None:
    """Two instances of a cache=redis project share Redis and a database; clients read and
    write through both while Redis is killed with SIGKILL for three seconds and started
    again, empty. No request may fail; afterwards an instance must hit the L2 for what the
    other stored, and a write through one must reach the other's cached read."""
    answers = {"project_name": "Cached", "cache": "redis", "features": ["metrics"]}
    project = Project(
        render(template_repo, tmp_path / "cached", {**answers, "python_version": "3.11"})
    )
    project.sync("3.11")
    with redis_server() as redis:
        env = {
            "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/app.db",
            "REDIS_URL": redis.url(0),
            "MIGRATE_ON_START": "false",
        }
        project.uv("alembic", "upgrade", "head", env=env)
        with (
            serve(project, uv_run("cached"), env=env) as a,
            serve(project, uv_run("cached"), env=env) as b,
        ):
            author = new_user(a, "a@example.com", "A")
            posts = [new_post(a, author, f"post {i}") for i in range(20)]
            traffic = Traffic([a, b], author, posts)
            threads = [
                threading.Thread(target=traffic.run, args=(i,)) for i in range(REDIS_CLIENTS)
            ]
            for thread in threads:
                thread.start()
            time.sleep(2)
            redis.kill()
            killed = time.monotonic()
            time.sleep(OUTAGE_S)
            redis.start()
            restarted = time.monotonic()

            # While the clients go on: what one instance stores in the L2, the other reads
            # from there again...
            def l2_hit_on_b() -> bool:
                before = l2_hits(b)
                post = new_post(a, author, "fresh")
                assert a.get(f"/api/posts/{post}").status == 200
                assert b.get(f"/api/posts/{post}").status == 200
                return l2_hits(b) > before

            wait_for(l2_hit_on_b, timeout=15)
            l2_back = time.monotonic() - restarted

            # ...and a write through one instance reaches the other's cached read within a
            # second, far sooner than the shortest TTL a cached read has (the degraded L1's).
            def invalidation_reaches_b() -> bool:
                post = new_post(a, author, "before")
                assert b.get(f"/api/posts/{post}").json()["title"] == "before"  # type: ignore[index]
                a.request("PUT", f"/api/posts/{post}", {"title": "after", "body": "b"})
                deadline = time.monotonic() + 1
                while time.monotonic() < deadline:
                    if b.get(f"/api/posts/{post}").json()["title"] == "after":  # type: ignore[index]
                        return True
                    time.sleep(0.05)
                return False

            wait_for(invalidation_reaches_b, timeout=15)
            invalidation_back = time.monotonic() - restarted
            time.sleep(1)
            traffic.stop.set()
            for thread in threads:
                thread.join(60)

            statuses = Counter(status for _, status in traffic.statuses)
            during = Counter(s for at, s in traffic.statuses if killed <= at < restarted)
            print(
                f"\n[redis outage] answers by status: {dict(statuses)}, while down: {dict(during)}"
            )
            assert set(statuses) <= {200, 201}, statuses
            assert sum(during.values()) > 0, "requests must have been served while Redis was down"
            print(
                f"[redis outage] after the restart: L2 hits across instances within "
                f"{l2_back:.2f} s, cross-instance invalidation within {invalidation_back:.2f} s"
            )
