"""Boot a generated project's server and talk to it over loopback."""

import json
import os
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from .project import Project, clean_env, tool
from .servers import free_port


@dataclass
class Response:
    status: int
    body: bytes
    headers: dict[str, str]

    def json(self) -> object:
        return json.loads(self.body)


@dataclass
class Server:
    base_url: str
    process: subprocess.Popen[bytes]

    def get(self, path: str, headers: Mapping[str, str] | None = None) -> Response:
        return self.request("GET", path, headers=headers)

    def request(
        self,
        method: str,
        path: str,
        body: object = None,
        headers: Mapping[str, str] | None = None,
    ) -> Response:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self.base_url + path, data=data, method=method, headers=dict(headers or {})
        )
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return Response(response.status, response.read(), dict(response.headers))
        except urllib.error.HTTPError as error:
            return Response(error.code, error.read(), dict(error.headers))


def port_of(server: Server) -> int:
    return int(urllib.parse.urlsplit(server.base_url).port or 0)


def parent_pids() -> dict[int, int]:
    """Every process's parent, read from /proc."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parents[int(stat.parent.name)] = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
    return parents


def worker_processes(server: Server) -> list[int]:
    """The processes under ``server`` that hold a socket listening on its port and have no
    child that holds one too: the workers (a supervisor holds one as well, above them; a
    server may give each worker a socket of its own)."""
    port = port_of(server)
    listening = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[1].endswith(f":{port:04X}") and fields[3] == "0A":  # LISTEN
            listening.add(f"socket:[{fields[9]}]")
    assert listening, f"nothing listens on {port}"
    parents = parent_pids()

    def descends(pid: int) -> bool:
        while pid > 1:
            if pid == server.process.pid:
                return True
            pid = parents.get(pid, 0)
        return False

    holders = set()
    for pid in filter(descends, parents):
        try:
            links = [os.readlink(fd) for fd in Path(f"/proc/{pid}/fd").iterdir()]
        except OSError:
            continue
        if listening.intersection(links):
            holders.add(pid)
    return sorted(pid for pid in holders if not any(parents.get(h) == pid for h in holders))


@contextmanager
def serve(
    project: Project,
    command: list[str],
    env: Mapping[str, str] | None = None,
    timeout: float = 60,
) -> Iterator[Server]:
    """Run `command` (e.g. the README's `uv run <slug>`) with HOST/PORT set; stop it after.

    ``{port}`` in an argument is replaced by the port the server must listen on.
    """
    port = free_port()
    command = [arg.replace("{port}", str(port)) for arg in command]
    log = project.path / f".server-{port}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            command,
            cwd=project.path,
            env=clean_env({"HOST": "127.0.0.1", "PORT": str(port), **(env or {})}),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = Server(f"http://127.0.0.1:{port}", process)
    try:
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                raise AssertionError(f"server exited {process.returncode}:\n{log.read_text()}")
            try:
                if server.get("/healthz").status == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"server not up after {timeout}s:\n{log.read_text()}")
            time.sleep(0.2)
        yield server
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        log.unlink(missing_ok=True)


def uv_run(*args: str) -> list[str]:
    return [tool("uv"), "run", "--no-sync", *args]


class Traffic:
    """Clients that read posts by id and create posts, alternating between two instances,
    until stopped, recording every answer's status."""

    def __init__(self, servers: list[Server], author_id: int, post_ids: list[int]) -> None:
        self.servers = servers
        self.author_id = author_id
        self.post_ids = post_ids
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.statuses: list[tuple[float, int]] = []

    def run(self, client: int) -> None:
        n = 0
        while not self.stop.is_set():
            server = self.servers[(client + n) % len(self.servers)]
            if n % 5 == 4:
                body = {"author_id": self.author_id, "title": f"{client}-{n}", "body": "text"}
                answer = server.request("POST", "/api/posts", body)
            else:
                answer = server.get(f"/api/posts/{self.post_ids[n % len(self.post_ids)]}")
            n += 1
            with self.lock:
                self.statuses.append((time.monotonic(), answer.status))


def l2_hits(server: Server) -> float:
    metrics = server.get("/metrics").body.decode()
    [line] = [x for x in metrics.splitlines() if x.startswith('cache_hits_total{layer="l2"}')]
    return float(line.split()[-1])


def new_user(server: Server, email: str, name: str) -> int:
    answer = server.request("POST", "/api/users", {"email": email, "name": name})
    assert answer.status == 201, answer.body
    return int(answer.json()["id"])  # type: ignore[index]


def new_post(server: Server, author_id: int, title: str) -> int:
    answer = server.request(
        "POST", "/api/posts", {"author_id": author_id, "title": title, "body": "b"}
    )
    assert answer.status == 201, answer.body
    return int(answer.json()["id"])  # type: ignore[index]


def wait_for(condition: Callable[[], bool], timeout: float) -> None:
    """Poll ``condition`` until it holds; fail after ``timeout`` seconds."""
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < timeout, f"not within {timeout} s"
        time.sleep(0.1)
