"""Side-by-side throughput of a generated project's endpoints, in one run.

    uv run python -m bench.endpoints                       # SQLite, in-process cache
    uv run python -m bench.endpoints --database postgresql --cache redis --runs 3

Generates a project from the working tree, installs it, seeds it, serves it with one
uvicorn worker pinned to core 0 and loads it with wrk pinned to core 1 (the method of
SPEC §8: 64 connections, medians of several runs). PostgreSQL and Redis, when chosen, are
private servers on free loopback ports. Prints a Markdown table: the median requests/s,
p50 and p99 of every path, so the rows can be compared with each other.
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from tests.e2e import serve
from tests.project import Project, render, snapshot_repo, tool
from tests.servers import postgres_server, redis_server

DEFAULT_PATHS = [
    "/healthz",
    "/api/posts?limit=20",
    "/api/posts/1",
    "/api/users?limit=20",
    "/api/posts/1/comments?limit=20",
]
REPORT = """
done = function(summary, latency, requests)
  io.write(string.format('BENCH {"requests": %d, "duration_us": %d, "errors": %d, '
    .. '"non2xx": %d, "p50_us": %d, "p99_us": %d}\\n', summary.requests, summary.duration,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    summary.errors.status, latency:percentile(50), latency:percentile(99)))
end
"""


def pinned(core: int, command: list[str]) -> list[str]:
    taskset = shutil.which("taskset")
    return [taskset, "-c", str(core), *command] if taskset and os.cpu_count() > 1 else command


def wrk(url: str, seconds: int, connections: int, script: Path) -> dict[str, float]:
    out = subprocess.run(
        pinned(
            1, [tool("wrk"), "-t1", f"-c{connections}", f"-d{seconds}s", "-s", str(script), url]
        ),
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    data = json.loads(next(ln for ln in out.splitlines() if ln.startswith("BENCH "))[6:])
    data["rps"] = data["requests"] / (data["duration_us"] / 1e6)
    return data


@contextmanager
def services(database: str, cache: str) -> Iterator[dict[str, str]]:
    with ExitStack() as stack:
        env: dict[str, str] = {}
        if database == "postgresql":
            pg = stack.enter_context(postgres_server())
            env["DATABASE_URL"] = pg.create_database("bench")
        if cache == "redis":
            env["REDIS_URL"] = stack.enter_context(redis_server()).url(0)
        yield env


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--cache", choices=["memory", "redis"], default="memory")
    parser.add_argument("--paths", nargs="+", default=DEFAULT_PATHS)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--seed", default="--users 1000 --posts 20000 --comments 100000")
    parser.add_argument("--env", nargs="*", default=[], help="extra KEY=VALUE for the server")
    args = parser.parse_args()

    with (
        tempfile.TemporaryDirectory(prefix="fe-bench-") as work,
        services(args.database, args.cache) as env,
    ):
        root = Path(work)
        template = snapshot_repo(root / "template", "v0.0.0")
        answers = {
            "project_name": "Bench",
            "python_version": "3.11",
            "database": args.database,
            "cache": args.cache,
        }
        project = Project(render(template, root / "bench", answers))
        project.sync("3.11")
        env = {
            **env,
            "DATABASE_URL": env.get("DATABASE_URL", f"sqlite+aiosqlite:///{root}/b.db"),
            "LOG_LEVEL": "warning",
            **dict(kv.split("=", 1) for kv in args.env),
        }
        project.uv("bench-seed", *args.seed.split(), env=env)
        script = root / "report.lua"
        script.write_text(REPORT)
        command = pinned(0, [str(project.path / ".venv" / "bin" / "bench")])
        results: dict[str, list[dict[str, float]]] = {}
        with serve(project, command, env=env) as server:
            for _ in range(args.runs):  # interleaved, so drift hits every path alike
                for path in args.paths:
                    results.setdefault(path, []).append(
                        wrk(server.base_url + path, args.seconds, args.connections, script)
                    )
    print(
        f"\n{args.database} + {args.cache}, 1 worker, {args.connections} connections, "
        f"median of {args.runs} x {args.seconds}s\n"
    )
    print("| path | req/s | p50 ms | p99 ms | errors | non-2xx |")
    print("|---|---:|---:|---:|---:|---:|")
    for path, runs in results.items():
        print(
            f"| `{path}` | {statistics.median(r['rps'] for r in runs):,.0f} "
            f"| {statistics.median(r['p50_us'] for r in runs) / 1000:.2f} "
            f"| {statistics.median(r['p99_us'] for r in runs) / 1000:.2f} "
            f"| {sum(r['errors'] for r in runs):.0f} | {sum(r['non2xx'] for r in runs):.0f} |"
        )


if __name__ == "__main__":
    main()
