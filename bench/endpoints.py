"""Side-by-side throughput of a generated project's endpoints, in one run.

    uv run python -m bench.endpoints                       # SQLite, in-process cache
    uv run python -m bench.endpoints --database postgresql --cache redis --runs 3
    uv run python -m bench.endpoints --variants cached: uncached:CACHE_ENABLED=false

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


def parse_variant(text: str) -> tuple[str, dict[str, str]]:
    """``name:KEY=VALUE,KEY=VALUE`` -> (name, env)."""
    name, _, settings = text.partition(":")
    return name, dict(kv.split("=", 1) for kv in settings.split(",") if kv)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--cache", choices=["memory", "redis"], default="memory")
    parser.add_argument("--paths", nargs="+", default=DEFAULT_PATHS)
    parser.add_argument(
        "--variants",
        nargs="+",
        default=["default:"],
        help="servers to compare, NAME:KEY=VALUE,... (settings of the generated app)",
    )
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--seed", default="--users 1000 --posts 20000 --comments 100000")
    parser.add_argument("--features", nargs="*", default=None, help="template features")
    args = parser.parse_args()
    variants = [parse_variant(v) for v in args.variants]

    with (
        tempfile.TemporaryDirectory(prefix="fe-bench-") as work,
        services(args.database, args.cache) as env,
        ExitStack() as servers,
    ):
        root = Path(work)
        template = snapshot_repo(root / "template", "v0.0.0")
        answers = {
            "project_name": "Bench",
            "python_version": "3.11",
            "database": args.database,
            "cache": args.cache,
        }
        if args.features is not None:
            answers["features"] = args.features
        project = Project(render(template, root / "bench", answers))
        project.sync("3.11")
        env = {
            "DATABASE_URL": f"sqlite+aiosqlite:///{root}/b.db",
            "LOG_LEVEL": "warning",
            "RATE_LIMITS": "{}",
            **env,
        }
        project.uv("bench-seed", *args.seed.split(), env=env)
        script = root / "report.lua"
        script.write_text(REPORT)
        command = pinned(0, [str(project.path / ".venv" / "bin" / "bench")])
        urls = {
            name: servers.enter_context(serve(project, command, env={**env, **extra})).base_url
            for name, extra in variants
        }
        results: dict[tuple[str, str], list[dict[str, float]]] = {}
        for _ in range(args.runs):  # interleaved, so drift hits every row alike
            for path in args.paths:
                for name, url in urls.items():
                    results.setdefault((path, name), []).append(
                        wrk(url + path, args.seconds, args.connections, script)
                    )
    print(
        f"\n{args.database} + {args.cache}, 1 worker each, {args.connections} connections, "
        f"median of {args.runs} x {args.seconds}s, interleaved\n"
    )
    print("| path | variant | req/s | p50 ms | p99 ms | errors | non-2xx |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for (path, name), runs in results.items():
        print(
            f"| `{path}` | {name} | {statistics.median(r['rps'] for r in runs):,.0f} "
            f"| {statistics.median(r['p50_us'] for r in runs) / 1000:.2f} "
            f"| {statistics.median(r['p99_us'] for r in runs) / 1000:.2f} "
            f"| {sum(r['errors'] for r in runs):.0f} | {sum(r['non2xx'] for r in runs):.0f} |"
        )


if __name__ == "__main__":
    main()
