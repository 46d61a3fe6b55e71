"""This repository's own benchmark scripts, run end to end at a tiny scale."""

import subprocess
import sys

import pytest

from .project import REPO_ROOT

pytestmark = pytest.mark.e2e


def test_before_after_sweeps_every_variant_and_the_naive_app() -> None:
    """bench/before_after.py renders, installs, seeds and serves both projects and the naive
    app, and prints the medians of alternating sweeps with the raw ASGI ceiling."""
    command = [
        sys.executable, "-m", "bench.before_after", "--connections", "4,8", "--duration", "1",
        "--warmup", "0", "--runs", "2", "--users", "10", "--posts", "60",
    ]  # fmt: skip
    result = subprocess.run(
        command,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    rows = [line.split("|")[1:-1] for line in result.stdout.splitlines() if line.startswith("| ")]
    assert [cell.strip() for cell in rows[0]] == [
        "connections", "variant", "avg ms", "p50 ms", "p95 ms", "p99 ms", "errors", "req/s",
        "x naive",
    ]  # fmt: skip
    cells = {(row[0].strip(), row[1].strip()): [c.strip() for c in row[2:]] for row in rows[1:]}
    assert list(cells) == [
        ("4", "default"),
        ("4", "postgresql-redis"),
        ("4", "naive"),
        ("8", "default"),
        ("8", "postgresql-redis"),
        ("8", "naive"),
        ("100", "raw ASGI app, same bytes"),
    ]
    for key, (_avg, _p50, _p95, _p99, errors, rps, _versus) in cells.items():
        assert errors == "0.00%", key
        assert float(rps.replace(",", "")) > 0, key
    for level in ("4", "8"):
        assert cells[(level, "naive")][-1] == "1.0"
        assert float(cells[(level, "default")][-1]) > 1, "the cached project beats the naive one"


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
