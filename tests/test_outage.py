"""A PostgreSQL restart under a write load: clear 503s, no lost write, prompt recovery.

A generated PostgreSQL project serves eight clients that create posts without pause while
its private PostgreSQL is stopped for three seconds and started again. Every answer must be
a 201 or a 503 problem with ``Retry-After`` (never a 500, never a hang), ``/readyz`` must
name the database while it is down, writes must succeed again within seconds, and every
write answered 201 must be in the database afterwards.
"""

import json
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from .e2e import Response, Server, serve, uv_run
from .project import Project, render
from .servers import postgres_server

pytestmark = pytest.mark.e2e

CLIENTS = 8
OUTAGE_S = 3.0
# An answer within this bound: the connect timeout and the pool timeout are both shorter.
SLOWEST_ANSWER_S = 12.0


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
            user = server.request("POST", "/api/users", {"email": "a@example.com", "name": "A"})
            assert user.status == 201
            writers = Writers(server, int(user.json()["id"]))  # type: ignore[index]
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
