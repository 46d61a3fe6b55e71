"""What the side-by-side benchmarks share: servers on free ports, wrk runs.

The servers are the project's default, granian (core/serving.py), one worker each, so the
figures are those of what production runs.

Servers are pinned to CPU 0 and wrk to CPU 1 when the machine has two or more cores, so the
load generator does not steal the server's CPU.
"""

import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

BENCH_DIR = Path(__file__).resolve().parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def pinned(command: list[str], cpu: int) -> list[str]:
    if (os.cpu_count() or 1) >= 2 and shutil.which("taskset"):
        return ["taskset", "-c", str(cpu), *command]
    return command


# The project's own BACKLOG default. granian serves at most its backlog's worth of
# connections per worker at once (its backpressure default): past its own smaller default,
# the connections of a large level would wait unserved, and unmeasured, for the whole level.
BACKLOG = 2048


def start_server(
    app: str,
    port: int,
    log: IO[bytes] | None = None,
    extra: Sequence[str] = (),
    backlog: int = BACKLOG,
) -> subprocess.Popen[bytes]:
    """One granian worker (uvloop, HTTP/1.1 as the project's command, no access log) serving the
    ``module:factory`` ``app`` from this folder, ``backlog`` connections at once; returns once
    it answers requests."""
    command = [
        sys.executable, "-m", "granian", "--interface", "asgi", "--factory",
        "--working-dir", str(BENCH_DIR), "--port", str(port), "--workers", "1",
        "--backlog", str(backlog), "--loop", "uvloop", "--http", "1", "--no-access-log",
        "--log-level", "warning", *extra, app,
    ]  # fmt: skip
    server = subprocess.Popen(pinned(command, 0), stderr=log or subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and server.poll() is None:
        if answers(port):
            return server
        time.sleep(0.1)
    server.kill()
    output = ""
    if log is not None:
        log.seek(0)
        output = ":\n" + log.read().decode()[-2000:]
    raise RuntimeError(f"{app} did not start on port {port}{output}")


def answers(port: int) -> bool:
    """Whether a server on ``port`` answers HTTP: granian's main process listens before its
    worker serves, so an open port alone is not enough."""
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5).close()
    except urllib.error.HTTPError:
        return True  # an error page is an answer too
    except OSError:
        return False
    return True


def worker_pid(server: subprocess.Popen[bytes]) -> int:
    """The process that serves the requests: the worker that granian's main process started
    (its one child), or ``server`` itself where /proc cannot tell."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == server.pid:
                return int(stat.parent.name)
        except (OSError, ValueError):
            continue
    return server.pid


def expect_ok(url: str) -> None:
    """Exit unless ``url`` answers 200: wrk counts a fast error page as throughput."""
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            response.read()
    except urllib.error.HTTPError as exc:
        detail = exc.read()[:300].decode(errors="replace")
        sys.exit(f"{url} answered {exc.code}, not 200 (is DATABASE_URL migrated?): {detail}")
    except OSError as exc:  # refused, unreachable, timed out
        reason = getattr(exc, "reason", exc)
        sys.exit(f"{url} did not answer ({reason}): is the server running there?")


@dataclass(frozen=True, slots=True)
class WrkRun:
    rate: float
    p99: str
    errors: int
    output: str


def wrk(url: str, duration: int, connections: int, extra: Sequence[str] = ()) -> WrkRun:
    """Requests/s, p99 latency and failed requests (non-2xx, socket errors, timeouts)."""
    command = ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--latency", *extra, url]
    output = subprocess.run(pinned(command, 1), capture_output=True, text=True, check=True).stdout
    rate = re.search(r"Requests/sec:\s+([\d.]+)", output)
    # The latency distribution's line, not a "...99%" at the end of a thread-stats line.
    p99 = re.search(r"^\s*99%\s+(\S+)", output, re.MULTILINE)
    if not rate or not p99:
        raise RuntimeError(f"unexpected wrk output:\n{output}")
    errors = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", output))
    if non_2xx := re.search(r"Non-2xx or 3xx responses: (\d+)", output):
        errors += int(non_2xx[1])
    return WrkRun(float(rate[1]), p99[1], errors, output)
