"""Before/after: the generated projects against the naive implementation, in one run.

    uv run python -m bench.before_after                          # the full sweep, 3 runs
    uv run python -m bench.before_after --connections 100,1000 --duration 5 --runs 5
    uv run python -m bench.before_after --out results            # also .md, .json and .png

Generates (a) the default project and (b) a ``postgresql`` + ``redis`` one from the working
tree, installs them with compiled bytecode (as their Dockerfile does: a worker that
compiles its imports at start, where it may not write ``.pyc`` files, holds more memory),
seeds them, and serves each with its own command (one worker of its default server,
granian) pinned to core 0, next to ``bench/naive_app.py`` (the same API written the naive
way, served by uvicorn, on the default project's seeded SQLite database). Each run plays
the generated project's own load test (``bench/loadtest.py --url``, wrk pinned to core 1)
against every variant in turn, so drift hits them alike; the table is the median of
``--runs`` per level and variant, with each row's requests/s over the naive app's. The raw
ASGI row is the load test's own ceiling: the same mix against an app sending one post's
bytes, the machine's limit.

A second table is the cached read alone: plain wrk on ``GET /api/posts/1`` of each variant
at 64 connections, alternating, with each variant's requests/s over the naive app's and
over the raw ASGI app's (the same load test's raw app, sending that post's bytes).

A third table is each project's memory: its worker's resident memory idle (before its
first sweep) and at its peak (``VmHWM``, over every sweep). Then the uncached list page of
each project against the same query written by hand with SQLAlchemy Core: the project's own
``bench/list_posts.py`` on its database, caches off. Last, each target of the issue this
script answers (#15) with the figure measured here and whether this run met it.

With ``--out``, the tables go to ``before_after.md`` there as well, the medians to
``before_after.json``, and a plot of p99 and requests/s against connections per variant to
``before_after.png`` (matplotlib, in this repository's dev group).

A variant that cannot keep up at a level shows it in that level's row: wrk counts the
requests still unanswered at its 5 s timeout as errors, and every level starts once the
server has finished the backlog of the one before. A sweep that fails outright is reported
with its output and left out of the medians; the other variants' sweeps go on.
"""

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import urllib.request
from contextlib import AbstractContextManager, ExitStack
from pathlib import Path

from bench.endpoints import REPORT, pinned, services, wrk
from tests.e2e import Server, serve, worker_processes
from tests.project import Project, render, snapshot_repo

BENCH_DIR = Path(__file__).resolve().parent
PROJECTS = ("default", "postgresql-redis")  # generated; the naive app is the third variant
VARIANTS = (*PROJECTS, "naive")
FIGURES = ("avg_ms", "p50_ms", "p95_ms", "p99_ms", "error_rate", "rps")
SERVER_ENV = {"LOG_LEVEL": "warning", "RATE_LIMITS": "{}", "WORKERS": "1"}
# copier.yml's default python_version: the default project's. On 3.11 a cache miss waits a
# turn of the event loop before its load starts (core/coalesce.py), which shows at 1,000
# connections; --python 3.11 measures that.
PYTHON = "3.12"
# The load test waits up to this long after each level for an overloaded server to finish
# its backlog (workload.SETTLE_TIMEOUT); a sweep's time limit allows for it.
SETTLE_S = 120


def serve_naive(project: Project, database: Path) -> AbstractContextManager[Server]:
    """``naive_app.py`` on ``project``'s interpreter and SQLite ``database``, on core 0."""
    command = [str(project.path / ".venv" / "bin" / "python"), "-m", "uvicorn"]
    command += ["naive_app:create_app", "--factory", "--app-dir", str(BENCH_DIR)]
    command += ["--port", "{port}", "--log-level", "warning", "--no-access-log"]
    return serve(project, pinned(0, command), env={"NAIVE_DATABASE_URL": f"sqlite:///{database}"})


def serve_raw(project: Project, body: bytes, folder: Path) -> AbstractContextManager[Server]:
    """The raw ASGI app of ``project``'s load test (``bench/workload.py``) sending ``body``,
    served as the projects are: one granian worker on core 0."""
    python = str(project.path / ".venv" / "bin" / "python")
    source = subprocess.run(
        [python, "-c", "from workload import RAW_APP; print(RAW_APP)"],
        cwd=project.path / "bench", capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "raw_asgi.py").write_text(source)
    (folder / "body.json").write_bytes(body)
    command = [
        python, "-m", "granian", "--interface", "asgi", "--factory", "--working-dir", str(folder),
        "--port", "{port}", "--workers", "1", "--loop", "uvloop", "--http", "1", "--no-access-log",
        "--log-level", "warning", "raw_asgi:create_app",
    ]  # fmt: skip
    return serve(project, pinned(0, command), env={"RAW_BODY_FILE": str(folder / "body.json")})


CACHED_READ = "/api/posts/1"
CACHED_READ_CONNECTIONS = 64
RAW = "raw ASGI app, same bytes"


def cached_reads(
    urls: dict[str, str], seconds: int, runs: int, folder: Path
) -> tuple[str, dict[str, float]]:
    """The cached-read table, and the median requests/s per variant, of plain wrk on
    `CACHED_READ`."""
    script = folder / "report.lua"
    script.write_text(REPORT)
    measured: dict[str, list[dict[str, float]]] = {name: [] for name in urls}
    for _ in range(runs):  # alternating, as the sweeps
        for name, url in urls.items():
            measured[name].append(wrk(url + CACHED_READ, seconds, CACHED_READ_CONNECTIONS, script))
    rps = {name: statistics.median(run["rps"] for run in runs) for name, runs in measured.items()}
    rows = [
        "| variant | req/s | p99 ms | errors | x naive | x raw |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, runs in measured.items():
        p99 = statistics.median(run["p99_us"] for run in runs) / 1000
        errors = max(run["errors"] + run["non2xx"] for run in runs)
        naive = f"{rps[name] / rps['naive']:.1f}" if rps.get("naive") else "-"
        raw = f"{rps[name] / rps[RAW]:.2f}" if rps.get(RAW) else "-"
        rows.append(f"| {name} | {rps[name]:,.0f} | {p99:.1f} | {errors} | {naive} | {raw} |")
    return "\n".join(rows), rps


def memory(results: dict[str, list[dict]]) -> dict[str, dict[str, float]]:
    """Per variant, its worker's resident memory before its first sweep and at its peak."""
    found = {}
    for name, runs in results.items():
        measured = [run["server_memory_mb"] for run in runs if run.get("server_memory_mb")]
        if measured and measured[0]["idle"] and all(m["peak"] for m in measured):
            found[name] = {"idle": measured[0]["idle"], "peak": max(m["peak"] for m in measured)}
    return found


def memory_table(found: dict[str, dict[str, float]]) -> str:
    rows = ["| variant | idle MB | peak MB |", "|---|---:|---:|"]
    rows += [f"| {name} | {m['idle']:.0f} | {m['peak']:.0f} |" for name, m in found.items()]
    return "\n".join(rows)


def list_page(project: Project, env: dict[str, str], seconds: int, runs: int, out: Path) -> str:
    """The project's own ``bench/list_posts.py``: its heading and table (and ``out``, JSON)."""
    printed = project.uv(
        "python", "bench/list_posts.py", "--duration", str(seconds), "--runs", str(runs),
        "--json", str(out), env=env,
    ).stdout  # fmt: skip
    return printed[printed.index("GET ") :].strip()


# The list page row each target reads: the generated endpoint with its middleware, against
# the hand-written Core endpoint behind the same middleware.
AS_SHIPPED = "generated app, as shipped (middleware chain)"


def targets(
    per_variant: dict[str, list[dict]],
    reads: dict[str, float],
    found_memory: dict[str, dict[str, float]],
    list_pages: dict[str, dict],
) -> str:
    """Each target of #15 that this run measured: the figure, and met or not met."""
    lines = []

    def verdict(what: str, met: bool) -> None:
        lines.append(f"- {what}: {'met' if met else '**not met**'}")

    for name in (n for n in PROJECTS if n in reads):
        naive, raw = reads.get("naive"), reads.get(RAW)
        if naive and raw:
            verdict(
                f"cached `GET {CACHED_READ}`, {name}: {reads[name] / naive:.1f}x the naive app "
                f"(target 10x), {reads[name] / raw:.2f}x the raw ASGI app (target 0.5x)",
                reads[name] >= 10 * naive and reads[name] >= 0.5 * raw,
            )
    for name, page in list_pages.items():
        versus = page["rows"][AS_SHIPPED]["vs_core"]
        verdict(
            f"uncached list page, {name} ({page['database']}): {versus:+.1%} against "
            "hand-written Core behind the same middleware (target: at least Core speed)",
            versus >= 0,
        )
    for name in (n for n in PROJECTS if n in per_variant):
        level = next((lv for lv in per_variant[name] if lv["connections"] == 1000), None)
        if level is None:
            lines.append(f"- 1,000 connections, {name}: not measured (not one of the levels)")
            continue
        verdict(
            f"1,000 connections, {name}: p99 {level['p99_ms']:.0f} ms (target under 250), "
            f"errors {level['error_rate']:.2%} (target none)",
            level["p99_ms"] < 250 and level["error_rate"] == 0,
        )
    for name in (n for n in PROJECTS if n in found_memory):
        m = found_memory[name]
        verdict(
            f"memory, {name}: {m['idle']:.0f} MB idle (target under 120), {m['peak']:.0f} MB "
            "at the peak (target under 150)",
            m["idle"] < 120 and m["peak"] < 150,
        )
    return "\n".join(lines)


def median_level(runs: list[dict[str, float]]) -> dict[str, float]:
    return {figure: statistics.median(run[figure] for run in runs) for figure in FIGURES}


def medians(results: dict[str, list[dict]], levels: list[int]) -> dict[str, list[dict]]:
    """Per variant whose sweeps did not all fail, the median figures of each level."""
    return {
        name: [
            {"connections": connections} | median_level([run["levels"][i] for run in runs])
            for i, connections in enumerate(levels)
        ]
        for name, runs in results.items()
        if runs
    }


def median_ceiling(results: dict[str, list[dict]]) -> dict[str, float] | None:
    """The median of every sweep's raw ASGI ceiling, with its connection count."""
    ceilings = [run["ceiling"] for runs in results.values() for run in runs]
    if not ceilings:
        return None
    return {"connections": ceilings[0]["connections"]} | median_level(ceilings)


def table(results: dict[str, list[dict]], levels: list[int]) -> str:
    rows = [
        "| connections | variant | avg ms | p50 ms | p95 ms | p99 ms | errors | req/s | x naive |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    per_variant = medians(results, levels)
    for index, connections in enumerate(levels):
        naive = per_variant["naive"][index]["rps"] if "naive" in per_variant else None
        for name in results:
            if name not in per_variant:
                rows.append(f"| {connections:,} | {name} | every sweep failed |||||||")
                continue
            m = per_variant[name][index]
            versus = f"{m['rps'] / naive:.1f}" if naive else "-"
            rows.append(
                f"| {connections:,} | {name} | {m['avg_ms']:.1f} | {m['p50_ms']:.1f} "
                f"| {m['p95_ms']:.1f} | {m['p99_ms']:.1f} | {m['error_rate']:.2%} "
                f"| {m['rps']:,.0f} | {versus} |"
            )
    ceiling = median_ceiling(results)
    if ceiling is None:
        return "\n".join(rows)
    rows.append(
        f"| {ceiling['connections']:,} | raw ASGI app, same bytes | {ceiling['avg_ms']:.1f} "
        f"| {ceiling['p50_ms']:.1f} | {ceiling['p95_ms']:.1f} | {ceiling['p99_ms']:.1f} "
        f"| {ceiling['error_rate']:.2%} | {ceiling['rps']:,.0f} | - |"
    )
    return "\n".join(rows)


def plot(per_variant: dict[str, list[dict]], ceiling: float | None, path: Path) -> str:
    """p99 and requests/s against connections, a line per variant, as a PNG at ``path``."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "plot skipped: matplotlib is not installed (uv sync installs the dev group)"
    figure, (latency, throughput) = plt.subplots(1, 2, figsize=(11, 4.5), layout="constrained")
    for name, rows in per_variant.items():
        connections = [row["connections"] for row in rows]
        latency.plot(connections, [row["p99_ms"] for row in rows], marker="o", label=name)
        throughput.plot(connections, [row["rps"] for row in rows], marker="o", label=name)
    if ceiling:
        throughput.axhline(ceiling, color="grey", linestyle="--", label=RAW)
    for axes, label in ((latency, "p99 latency (ms)"), (throughput, "requests/s")):
        axes.set_xscale("log")
        axes.set_xlabel("concurrent connections")
        axes.set_ylabel(label)
        axes.grid(True, alpha=0.3)
    latency.set_yscale("log")
    throughput.set_ylim(bottom=0)
    throughput.legend()
    figure.suptitle("Mixed load with writes: the generated projects against the naive app")
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return f"plot: {path}"


def write_out(folder: Path, report: str, data: dict) -> None:
    """The report as Markdown, ``data`` (the medians) as JSON, and the plot."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "before_after.md").write_text(report + "\n", encoding="utf-8")
    (folder / "before_after.json").write_text(json.dumps(data, indent=2), encoding="utf-8")
    ceiling = data["ceiling"]["rps"] if data["ceiling"] else None
    print(plot(data["levels"], ceiling, folder / "before_after.png"))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", default="10,50,100,200,500,1000,2000")
    parser.add_argument("--duration", type=int, default=10, help="seconds per level")
    parser.add_argument("--warmup", type=int, default=3, help="seconds before each sweep")
    parser.add_argument("--runs", type=int, default=3, help="sweeps per variant (median)")
    parser.add_argument("--writes", default="0.01", help="share of writes (loadtest.py)")
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--posts", type=int, default=10000)
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    parser.add_argument(
        "--python", choices=("3.11", "3.12", "3.13"), default=PYTHON, help="the projects' Python"
    )
    parser.add_argument("--out", type=Path, help="also write the results and a plot here")
    args = parser.parse_args(argv)
    try:
        levels = [int(c) for c in args.connections.split(",")]
    except ValueError:
        parser.error(f"--connections takes counts such as 10,100,1000, not {args.connections!r}")
    if args.runs < 1 or min(levels) < 1:
        parser.error("--runs and every level of --connections must be at least 1")

    with tempfile.TemporaryDirectory(prefix="fe-before-after-") as work, ExitStack() as stack:
        root = Path(work)
        template = snapshot_repo(root / "template", "v0.0.0")
        seed = ["--users", str(args.users), "--posts", str(args.posts)]
        seed += ["--comments", str(args.posts * 3)]
        projects: dict[str, tuple[Project, dict[str, str]]] = {}
        for name in PROJECTS:
            if name not in args.variants and name != "default":  # the naive app uses default's
                continue
            answers = {"project_name": "Bench", "python_version": args.python}
            env = {**SERVER_ENV, "DATABASE_URL": f"sqlite+aiosqlite:///{root}/bench.db"}
            if name == "postgresql-redis":
                answers |= {"database": "postgresql", "cache": "redis"}
                env |= stack.enter_context(services("postgresql", "redis"))
            project = Project(render(template, root / name, answers))
            project.sync(args.python, "--compile-bytecode")  # as the Dockerfile installs it
            project.uv("bench-seed", *seed, env=env)
            projects[name] = project, env
        default, default_env = projects["default"]
        urls, pids = {}, {}
        for name in args.variants:
            if name == "naive":
                server = serve_naive(default, root / "bench.db")
            else:
                project, env = projects[name]
                server = serve(project, pinned(0, [str(project.path / ".venv/bin/bench")]), env)
            running = stack.enter_context(server)
            urls[name], pids[name] = running.base_url, worker_processes(running)[0]

        results: dict[str, list[dict]] = {name: [] for name in urls}
        limit = args.warmup + (len(levels) + 1) * (args.duration + 2 * SETTLE_S) + 300
        for run in range(args.runs):  # alternating, so drift hits every variant alike
            for name, url in urls.items():
                out = root / "results" / name / str(run)
                try:
                    sweep = default.uv(
                        "python", "bench/loadtest.py", "--url", url, "--writes", args.writes,
                        "--connections", args.connections, "--duration", str(args.duration),
                        "--warmup", str(args.warmup), "--out", str(out), "--pid", str(pids[name]),
                        env=default_env, check=False, timeout=limit,
                    )  # fmt: skip
                    failure = f"exit {sweep.returncode}" if sweep.returncode else None
                    output = sweep.stdout[-2000:] + sweep.stderr[-2000:]
                except subprocess.TimeoutExpired as exc:
                    failure, output = f"still running after {limit:.0f} s", str(exc.stderr)
                if failure:
                    print(
                        f"sweep {run + 1} of {name} left out, {failure}:\n{output}", file=sys.stderr
                    )
                    continue
                results[name].append(json.loads((out / "loadtest.json").read_text()))
        if default_url := urls.get("default"):
            with urllib.request.urlopen(default_url + CACHED_READ) as response:
                body = response.read()
            raw = stack.enter_context(serve_raw(default, body, root / "raw"))
            urls[RAW] = raw.base_url
        reads, read_rps = cached_reads(urls, args.duration, args.runs, root)
        list_pages, page_tables = {}, []
        for name, (project, env) in projects.items():
            if name in args.variants:
                out = root / f"list_posts-{name}.json"
                page_tables.append(list_page(project, env, args.duration, args.runs, out))
                list_pages[name] = json.loads(out.read_text())
    per_variant, found_memory = medians(results, levels), memory(results)
    report = (
        f"\none worker each (core 0; the projects' own command, granian; the naive app, "
        f"uvicorn), Python {args.python}, wrk on core 1, {args.writes} writes, median of "
        f"{args.runs} alternating sweeps of {args.duration}s per level\n\n"
        f"{table(results, levels)}\n\n"
        f"Cached `GET {CACHED_READ}` alone, plain wrk at {CACHED_READ_CONNECTIONS} "
        f"connections, median of {args.runs} alternating runs of {args.duration}s:\n\n{reads}\n\n"
        f"Each worker's resident memory, idle before its first sweep and at its peak over "
        f"every sweep:\n\n{memory_table(found_memory)}\n\n"
        + "".join(f"{page}\n\n" for page in page_tables)
        + f"Targets:\n\n{targets(per_variant, read_rps, found_memory, list_pages)}"
    )
    print(report)
    if args.out:
        data = {
            "levels": per_variant,
            "ceiling": median_ceiling(results),
            "cached_read_rps": read_rps,
            "memory_mb": found_memory,
            "list_page": list_pages,
        }
        write_out(args.out, report.strip(), data)


if __name__ == "__main__":
    main()
