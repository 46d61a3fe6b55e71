"""Soak test: the mixed load held for minutes, and what it leaves behind.

    uv run python bench/soak.py                               # 10 minutes, a worker it starts
    uv run python bench/soak.py --duration 3600 --writes 0.05
    uv run python bench/soak.py --url http://127.0.0.1:8000   # a server you started

Without ``--url`` it serves the app itself, as ``loadtest.py`` does: one granian worker pinned
to CPU 0 on ``DATABASE_URL`` (a temporary SQLite database, always seeded, when it is not
set), the load generator on CPU 1. For ``--duration`` seconds it plays the mix of
``workload.py`` (reads and a share of ``--writes``) over ``--connections``, and every
``--interval`` seconds it samples the worker's resident memory: ``VmRSS`` of
/proc/<pid>/status for the worker it started, ``process_resident_memory_bytes`` from
``/metrics`` (every worker's, summed) for a server at ``--url``.

It prints one table, also written to ``--out`` as Markdown and JSON (with every sample):

- RSS at the start and at the end of the load;
- the RSS slope in MB/hour, a least-squares fit over the samples after ``--warmup``, against
  the memory budget of under 0.5 MB/hour. Judged on 300 s of samples or more: a shorter fit
  says more about the caches filling up than about a leak, so it is printed, not judged;
- the database connections still checked out once the load has stopped (read from
  ``/metrics`` until they are back, for up to 5 s): a connection never returned to the pool
  is a leak;
- each in-process cache's entries against its bound (L1 and edge, from ``/metrics``).

It exits with status 1 when a judged check fails, 0 otherwise.
"""

import argparse
import json
import re
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
from workload import (
    APP,
    Mix,
    Stats,
    bench_environment,
    load_generator,
    memory_mb,
    mix_file,
    seed,
    served,
)

# The memory budget of a worker under steady load.
MAX_GROWTH_MB_PER_HOUR = 0.5
# A slope fitted over less is not judged.
JUDGED_AFTER_S = 300.0
# How long connections may take to come back to the pool once the load stops.
REST_TIMEOUT_S = 5.0
CACHE_LAYERS = {"l1": "L1 cache", "edge": "edge cache"}

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(base: str) -> Samples:
    """Every sample of ``/metrics``, by name and labels."""
    with urllib.request.urlopen(base + "/metrics", timeout=30) as response:
        text = response.read().decode()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def metric(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def served_rss_mb(base: str) -> float | None:
    """The resident memory ``/metrics`` reports: one value per worker, summed."""
    try:
        samples = scrape(base).items()
    except OSError:  # a missed sample, not the end of the soak
        return None
    values = [value for (name, _), value in samples if name == "process_resident_memory_bytes"]
    return sum(values) / 2**20 if values else None


class Sampler(threading.Thread):
    """Reads ``rss()`` every ``interval`` seconds until stopped: (seconds since start, MB)."""

    def __init__(self, rss: Callable[[], float | None], interval: float) -> None:
        super().__init__(daemon=True)
        self.rss = rss
        self.interval = interval
        self.samples: list[tuple[float, float]] = []
        self._stopping = threading.Event()
        self._origin = time.monotonic()

    def run(self) -> None:
        self._origin = time.monotonic()
        while True:
            self.sample()
            if self._stopping.wait(self.interval):
                break

    def sample(self) -> None:
        value = self.rss()
        if value is not None:
            self.samples.append((time.monotonic() - self._origin, value))

    def stop(self) -> None:
        self._stopping.set()
        self.join()
        self.sample()  # the end of the load


@dataclass(frozen=True, slots=True)
class Fit:
    """A least-squares line through the samples after the warm-up."""

    mb_per_hour: float
    stderr: float  # standard error of the slope, MB/hour
    seconds: float  # the time the fitted samples span
    count: int


def fit(samples: list[tuple[float, float]], warmup: float) -> Fit | None:
    points = [(t / 3600, mb) for t, mb in samples if t >= warmup]
    n = len(points)
    if n < 3:
        return None
    mean_x = sum(x for x, _ in points) / n
    mean_y = sum(y for _, y in points) / n
    sxx = sum((x - mean_x) ** 2 for x, _ in points)
    if sxx == 0:
        return None
    slope = sum((x - mean_x) * (y - mean_y) for x, y in points) / sxx
    residuals = sum((y - mean_y - slope * (x - mean_x)) ** 2 for x, y in points)
    stderr = (residuals / (n - 2) / sxx) ** 0.5
    return Fit(slope, stderr, (points[-1][0] - points[0][0]) * 3600, n)


def at_rest(base: str) -> Samples:
    """``/metrics`` once the pool has its connections back, or after ``REST_TIMEOUT_S``."""
    deadline = time.monotonic() + REST_TIMEOUT_S
    while True:
        samples = scrape(base)
        checked_out = metric(samples, "db_pool_checked_out_connections")
        if checked_out == 0 or time.monotonic() > deadline:
            return samples
        time.sleep(0.2)


@dataclass(frozen=True, slots=True)
class Check:
    figure: str
    value: str
    limit: str
    verdict: str  # "ok", "FAIL", or why it is not judged

    @property
    def failed(self) -> bool:
        return self.verdict == "FAIL"


def memory_checks(samples: list[tuple[float, float]], warmup: float) -> list[Check]:
    if not samples:
        return [Check("RSS", "-", "", "not measured: no memory reading")]
    checks = [
        Check("RSS at start", f"{samples[0][1]:.1f} MB", "", ""),
        Check("RSS at end", f"{samples[-1][1]:.1f} MB", "", ""),
    ]
    line = fit(samples, warmup)
    limit = f"{MAX_GROWTH_MB_PER_HOUR} MB/hour"
    if line is None:
        return [*checks, Check("RSS slope", "-", limit, "too short to judge: too few samples")]
    figure = f"RSS slope ({line.count} samples over {line.seconds:.0f} s after the warm-up)"
    value = f"{line.mb_per_hour:+.2f} ± {line.stderr:.2f} MB/hour"
    if line.seconds < JUDGED_AFTER_S:
        verdict = f"too short to judge: {line.seconds:.0f} s fitted, {JUDGED_AFTER_S:.0f} s needed"
    else:
        verdict = "ok" if line.mb_per_hour < MAX_GROWTH_MB_PER_HOUR else "FAIL"
    return [*checks, Check(figure, value, limit, verdict)]


def rest_checks(samples: Samples) -> list[Check]:
    """What ``/metrics`` says once the load has stopped; a figure missing from it fails."""
    missing = "not in /metrics"
    checked_out = metric(samples, "db_pool_checked_out_connections")
    checks = [
        Check(
            "database connections checked out at rest",
            missing if checked_out is None else f"{checked_out:.0f}",
            "0",
            "FAIL" if checked_out is None or checked_out > 0 else "ok",
        )
    ]
    for layer, name in CACHE_LAYERS.items():
        entries = metric(samples, "cache_entries", layer=layer)
        bound = metric(samples, "cache_max_entries", layer=layer)
        if entries is None or bound is None:
            checks.append(Check(f"{name} entries", missing, "-", "FAIL"))
            continue
        verdict = "ok" if entries <= bound else "FAIL"
        checks.append(Check(f"{name} entries", f"{entries:,.0f}", f"{bound:,.0f}", verdict))
    return checks


def markdown(report: dict[str, object], stats: Stats, checks: list[Check]) -> str:
    lines = [
        f"# Soak of {report['target']}",
        "",
        f"{report['date']}, `{report['command']}`",
        f"load generator: {report['generator']}; {report['connections']} connections for "
        f"{report['duration_s']:g} s; mix: {report['mix']}; {stats.requests:,} requests, "
        f"{stats.rps:,.0f} req/s, errors {stats.error_rate:.2%}",
        "",
        "| figure | value | limit | verdict |",
        "|---|---:|---:|---|",
    ]
    lines += [f"| {c.figure} | {c.value} | {c.limit} | {c.verdict} |" for c in checks]
    failed = [c.figure for c in checks if c.failed]
    lines += ["", f"Failed: {', '.join(failed)}." if failed else "No check failed."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="base URL of a running server (default: boot the app)")
    parser.add_argument("--seed", action="store_true", help="seed the database first")
    parser.add_argument("--users", type=int, default=200, help="users to seed")
    parser.add_argument("--posts", type=int, default=1000, help="posts to seed (3 comments each)")
    parser.add_argument(
        "--writes",
        type=Mix.parse,
        default=Mix.parse("0.01"),
        help="share of writes: one number spread over comment, title and post, or "
        "KIND=SHARE[,KIND=SHARE] (default: 0.01)",
    )
    parser.add_argument("--connections", type=int, default=50, help="concurrent connections")
    parser.add_argument("--duration", type=float, default=600.0, help="seconds of load")
    parser.add_argument(
        "--warmup", type=float, default=60.0, help="seconds left out of the RSS fit"
    )
    parser.add_argument("--interval", type=float, default=5.0, help="seconds between samples")
    parser.add_argument("--out", type=Path, default=Path("bench/results"), help="results folder")
    args = parser.parse_args(argv)
    if args.url and not re.match(r"https?://[^/]+$", args.url.rstrip("/")):
        parser.error(f"--url takes a base URL such as http://127.0.0.1:8000, not {args.url!r}")
    if args.duration < 1 or args.connections < 1 or args.interval <= 0 or args.warmup < 0:
        parser.error(
            "--duration must be at least 1 second, --connections at least 1, --interval "
            "positive and --warmup not negative"
        )

    console = Console(stderr=True)
    client, generator = load_generator(args.url, console.print)
    progress = Progress(
        TextColumn("{task.description}"), BarColumn(), TimeRemainingColumn(), console=console
    )
    with tempfile.TemporaryDirectory() as folder, progress, ExitStack() as app_server:
        if args.url:
            base = args.url.rstrip("/")
            if args.seed:
                seed(args.users, args.posts)
        else:
            if bench_environment(folder):
                args.seed = True
            if args.seed:
                console.print(f"seeding {args.users} users and {args.posts} posts")
                seed(args.users, args.posts)
            server = app_server.enter_context(served(APP))
            base = server.base
        try:
            scrape(base)
        except urllib.error.HTTPError as exc:
            sys.exit(
                f"{base}/metrics answered {exc.code}: the soak reads the pool and the caches "
                "from it (is METRICS_ENABLED false?)"
            )
        requests = mix_file(base, args.writes.shares, folder)
        if args.url:
            sampler = Sampler(lambda: served_rss_mb(base), args.interval)
        else:
            sampler = Sampler(lambda pid=server.pid: memory_mb(pid, "VmRSS"), args.interval)

        task = progress.add_task("soak", total=1.0)
        sampler.start()
        try:
            stats = client(
                base, requests, args.duration, args.connections,
                lambda share: progress.update(task, completed=share),
            )  # fmt: skip
        finally:
            sampler.stop()
        progress.update(task, description="at rest", completed=1.0)
        rest = at_rest(base)

    checks = memory_checks(sampler.samples, args.warmup) + rest_checks(rest)
    report: dict[str, object] = {
        "target": args.url or f"{APP}, one granian worker",
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "command": " ".join(["python", *sys.argv]),
        "generator": generator,
        "connections": args.connections,
        "duration_s": args.duration,
        "warmup_s": args.warmup,
        "mix": args.writes.name,
        "mix_shares": args.writes.shares,
        "requests": stats.requests,
        "errors": stats.errors,
        "rss_samples": [{"seconds": round(t, 2), "mb": round(mb, 3)} for t, mb in sampler.samples],
        "checks": [
            {"figure": c.figure, "value": c.value, "limit": c.limit, "verdict": c.verdict}
            for c in checks
        ],
    }
    args.out.mkdir(parents=True, exist_ok=True)
    text = markdown(report, stats, checks)
    (args.out / "soak.md").write_text(text, encoding="utf-8")
    (args.out / "soak.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(text)
    print(f"results: {args.out / 'soak.md'}, {args.out / 'soak.json'}")
    return 1 if any(c.failed for c in checks) else 0


if __name__ == "__main__":
    raise SystemExit(main())
