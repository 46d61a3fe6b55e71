"""The monitoring a generated project ships: alert rules, their tests, the dashboard, and
the metrics of a running service with one and with several workers.

One project is rendered with ``alerts`` on and installed once per module; the servers run
its own console command on free ports, against a SQLite file migrated beforehand.
"""

import json
import os
import re
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import copier
import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parent.parent
PYTHON = "/root/.pyenv/versions/3.11.7/bin/python3.11"
PROMTOOL = shutil.which("promtool")
SLUG = "watched-service"

needs_promtool = pytest.mark.skipif(PROMTOOL is None, reason="promtool is not installed")

# PromQL words that are not metric names.
PROMQL_KEYWORDS = frozenset({"and", "or", "unless", "bool", "offset", "inf", "nan"})


def render_monitored_project(destination: Path) -> Path:
    """The template with metrics and alerts on (defaults otherwise), as a user gets it."""
    answers = {
        "project_name": "Watched Service",
        "python_version": "3.11",
        "features": ["metrics", "alerts"],
    }
    copier.run_copy(
        str(REPO_ROOT), destination, data=answers, defaults=True, vcs_ref="HEAD", quiet=True
    )
    return destination


@pytest.fixture(scope="module")
def monitored_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    project = render_monitored_project(tmp_path_factory.mktemp("monitored") / SLUG)
    subprocess.run(["uv", "sync", "-q", "--python", PYTHON], cwd=project, check=True)
    return project


@pytest.fixture(scope="module")
def migrated_database_url(monitored_project: Path) -> str:
    url = f"sqlite+aiosqlite:///{monitored_project}/service.db"
    subprocess.run(
        ["uv", "run", "--no-sync", "alembic", "upgrade", "head"],
        cwd=monitored_project,
        env={**os.environ, "DATABASE_URL": url},
        check=True,
        capture_output=True,
    )
    return url


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def get(url: str) -> tuple[int, str]:
    """One request on a fresh connection, so the kernel may hand it to any worker."""
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def scrape(base_url: str) -> dict[str, float]:
    """The exposition text as ``{'name{labels}': value}``, labels as exported."""
    status, text = get(f"{base_url}/metrics")
    assert status == 200
    samples: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            series, _, value = line.rpartition(" ")
            samples[series] = float(value)
    return samples


def exported_names(samples: dict[str, float]) -> set[str]:
    return {series.partition("{")[0] for series in samples}


def pids(samples: dict[str, float]) -> set[str]:
    return {
        match.group(1)
        for series in samples
        if series.startswith("process_resident_memory_bytes")
        and (match := re.search(r'pid="(\d+)"', series))
    }


class Server:
    def __init__(self, project: Path, database_url: str, workers: int, tmp: Path) -> None:
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.workers = workers
        env = {
            **os.environ,
            "HOST": "127.0.0.1",
            "PORT": str(self.port),
            "WORKERS": str(workers),
            "DATABASE_URL": database_url,
            "MIGRATE_ON_START": "false",
            "LOG_LEVEL": "warning",
            "PROMETHEUS_MULTIPROC_DIR": str(tmp / "metrics"),
        }
        if workers == 1:
            env.pop("PROMETHEUS_MULTIPROC_DIR")
        self.process = subprocess.Popen(
            [str(project / ".venv" / "bin" / SLUG)],
            cwd=tmp,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )

    def wait_until_serving(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"server exited: {self.process.stderr.read().decode()}")
            try:
                live_workers = pids(scrape(self.base_url))
            except (OSError, AssertionError):
                live_workers = None
            # One worker keeps its metrics in memory: no pid label, nothing to wait for.
            if live_workers is not None and (
                self.workers == 1 or len(live_workers) == self.workers
            ):
                return
            time.sleep(0.2)
        raise AssertionError(f"{self.workers} workers not serving within {timeout} s")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@pytest.fixture(scope="module", params=[1, 2], ids=["one-worker", "two-workers"])
def running_service(
    request: pytest.FixtureRequest,
    monitored_project: Path,
    migrated_database_url: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Server]:
    server = Server(
        monitored_project,
        migrated_database_url,
        workers=request.param,
        tmp=tmp_path_factory.mktemp(f"server-{request.param}"),
    )
    try:
        server.wait_until_serving()
        yield server
    finally:
        server.stop()


def promql_metric_names(expr: str) -> set[str]:
    """Metric and recording-rule names an expression reads (a small PromQL scanner).

    Strings, label matchers, ranges and grouping clauses are dropped first; what is left that
    looks like a name and is not called like a function is a series name.
    """
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    expr = re.sub(r"\{[^}]*\}", "", expr)
    expr = re.sub(r"\[[^\]]*\]", "", expr)
    expr = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)
    names = set()
    for match in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", expr):
        if expr[match.end() :].lstrip().startswith("("):
            continue
        if match.group().lower() not in PROMQL_KEYWORDS:
            names.add(match.group())
    return names


def load_rules(project: Path) -> list[dict[str, Any]]:
    rules = []
    for path in sorted((project / "monitoring/prometheus/rules").glob("*.yml")):
        for group in yaml.safe_load(path.read_text())["groups"]:
            rules += group["rules"]
    return rules


def dashboard_exprs(project: Path) -> list[str]:
    dashboard = json.loads((project / f"monitoring/grafana/dashboards/{SLUG}.json").read_text())
    return [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]


def test_promql_scanner_finds_metric_names() -> None:
    expr = (
        'sum by (job) (rate(http_requests_total{status_class="5xx"}[5m])) / '
        "job:http_requests:rate5m > 14.4 * 0.001 and on (job) "
        'label_replace(up{job="$job"}, "x", "and", "", "")'
    )
    assert promql_metric_names(expr) == {"http_requests_total", "job:http_requests:rate5m", "up"}


@needs_promtool
def test_rules_and_config_pass_promtool_check(monitored_project: Path) -> None:
    prometheus = monitored_project / "monitoring/prometheus"
    rules = sorted(str(path) for path in (prometheus / "rules").glob("*.yml"))
    assert len(rules) >= 2
    subprocess.run([PROMTOOL, "check", "rules", *rules], check=True, capture_output=True)
    subprocess.run(
        [PROMTOOL, "check", "config", str(prometheus / "prometheus.yml")],
        check=True,
        capture_output=True,
    )


@needs_promtool
def test_every_alert_passes_its_promtool_tests(monitored_project: Path) -> None:
    prometheus = monitored_project / "monitoring/prometheus"
    tests = sorted(str(path) for path in (prometheus / "tests").glob("*_test.yml"))
    result = subprocess.run(
        [PROMTOOL, "test", "rules", *tests], cwd=prometheus, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
    tested = set()
    for path in tests:
        for case in yaml.safe_load(Path(path).read_text())["tests"]:
            for check in case["alert_rule_test"]:
                fires = bool(check["exp_alerts"])
                tested.add((check["alertname"], fires))
    alerts = {rule["alert"] for rule in load_rules(monitored_project) if "alert" in rule}
    # Every alert has a test where it fires and one where it stays quiet.
    assert {(name, fires) for name in alerts for fires in (True, False)} <= tested


def test_every_alert_says_how_bad_and_what_happened(monitored_project: Path) -> None:
    for rule in load_rules(monitored_project):
        if "alert" in rule:
            assert rule.get("for"), rule["alert"]
            assert rule["labels"]["severity"] in {"warning", "critical"}, rule["alert"]
            assert rule["annotations"]["summary"], rule["alert"]
            assert rule["annotations"]["description"], rule["alert"]


def test_dashboard_is_provisioned_with_a_stable_uid(monitored_project: Path) -> None:
    grafana = monitored_project / "monitoring/grafana"
    dashboard = json.loads((grafana / f"dashboards/{SLUG}.json").read_text())
    assert dashboard["uid"] == f"{SLUG}-overview"
    datasources = yaml.safe_load((grafana / "provisioning/datasources/prometheus.yml").read_text())
    uids = {source["uid"] for source in datasources["datasources"]}
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            assert target["datasource"]["uid"] in uids, panel["title"]
    titles = " ".join(panel["title"].lower() for panel in dashboard["panels"])
    topics = ["requests per second", "p95", "error rate", "cache hit rate", "pool", "memory"]
    for topic in [*topics, "cpu", "rate-limited"]:
        assert topic in titles


def test_two_workers_count_every_request(
    monitored_project: Path, migrated_database_url: str, tmp_path: Path
) -> None:
    server = Server(monitored_project, migrated_database_url, workers=2, tmp=tmp_path)
    try:
        server.wait_until_serving()
        requests = 200
        for _ in range(requests):
            assert get(f"{server.base_url}/healthz")[0] == 200
        counter = 'http_requests_total{method="GET",route="/healthz",status_class="2xx"}'
        # Each scrape lands on either worker; every one must see the sum of both.
        scrapes = [scrape(server.base_url) for _ in range(6)]
        assert [samples[counter] for samples in scrapes] == [requests] * 6
        assert all(len(pids(samples)) == 2 for samples in scrapes)
    finally:
        server.stop()


def test_metrics_read_by_rules_and_dashboard_are_exported(
    monitored_project: Path, running_service: Server
) -> None:
    base = running_service.base_url
    traffic = ["/healthz", "/readyz", "/api/users", "/api/posts", "/api/posts", "/api/posts/999"]
    for path in [*traffic, "/no/such/page"]:
        get(f"{base}{path}")
    samples = scrape(base)

    rules = load_rules(monitored_project)
    recorded = {rule["record"] for rule in rules if "record" in rule}
    used = set()
    for expr in [rule["expr"] for rule in rules] + dashboard_exprs(monitored_project):
        used |= promql_metric_names(expr)
    assert used - recorded - {"up"} <= exported_names(samples)
    assert {name for name in used if ":" in name} <= recorded
    # The route label is the template, prefix included, never the raw path.
    assert 'route="/api/posts/{post_id}"' in " ".join(samples)
    assert "/api/posts/999" not in " ".join(samples)
    assert "/no/such/page" not in " ".join(samples)
