"""The monitoring a generated project ships: alert rules, their tests, the dashboard, and
the metrics of a running service with one and with several workers.

One project is rendered with ``alerts`` on and installed once per module; the servers run
its own console command on free ports, against a SQLite file migrated beforehand.
"""

import json
import re
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml

from .e2e import Server, serve
from .project import Project, render, tool

SLUG = "watched-service"

# PromQL words that are not metric names.
PROMQL_KEYWORDS = frozenset({"and", "or", "unless", "bool", "offset", "inf", "nan"})


@pytest.fixture(scope="module")
def monitored(template_repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Project:
    """The template with metrics and alerts on (defaults otherwise), as a user gets it."""
    answers = {
        "project_name": "Watched Service",
        "python_version": "3.11",
        "features": ["metrics", "alerts"],
    }
    project = Project(render(template_repo, tmp_path_factory.mktemp("monitored") / SLUG, answers))
    project.sync("3.11")
    return project


@pytest.fixture(scope="module")
def monitored_project(monitored: Project) -> Path:
    return monitored.path


@pytest.fixture(scope="module")
def migrated_database_url(monitored: Project) -> str:
    url = f"sqlite+aiosqlite:///{monitored.path}/service.db"
    monitored.uv("alembic", "upgrade", "head", env={"DATABASE_URL": url})
    return url


def scrape(server: Server) -> dict[str, float]:
    """The exposition text as ``{'name{labels}': value}``, labels as exported."""
    response = server.get("/metrics")
    assert response.status == 200
    samples: dict[str, float] = {}
    for line in response.body.decode().splitlines():
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


@contextmanager
def service(project: Project, database_url: str, workers: int, tmp: Path) -> Iterator[Server]:
    """The project's serve command with `workers` workers, once every worker answers scrapes."""
    env = {
        "WORKERS": str(workers),
        "DATABASE_URL": database_url,
        "MIGRATE_ON_START": "false",
        "LOG_LEVEL": "warning",
    }
    if workers > 1:
        env["PROMETHEUS_MULTIPROC_DIR"] = str(tmp / "metrics")
    with serve(project, [str(project.path / ".venv" / "bin" / SLUG)], env=env) as server:
        deadline = time.monotonic() + 60
        # One worker keeps its metrics in memory: no pid label, nothing to wait for.
        while workers > 1 and len(pids(scrape(server))) != workers:
            assert time.monotonic() < deadline, f"{workers} workers not serving within 60 s"
            time.sleep(0.2)
        yield server


@pytest.fixture(scope="module", params=[1, 2], ids=["one-worker", "two-workers"])
def running_service(
    request: pytest.FixtureRequest,
    monitored: Project,
    migrated_database_url: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp(f"server-{request.param}")
    with service(monitored, migrated_database_url, request.param, tmp) as server:
        yield server


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


def test_rules_and_config_pass_promtool_check(monitored_project: Path) -> None:
    prometheus = monitored_project / "monitoring/prometheus"
    rules = sorted(str(path) for path in (prometheus / "rules").glob("*.yml"))
    assert len(rules) >= 2
    subprocess.run([tool("promtool"), "check", "rules", *rules], check=True, capture_output=True)
    subprocess.run(
        [tool("promtool"), "check", "config", str(prometheus / "prometheus.yml")],
        check=True,
        capture_output=True,
    )


def test_every_alert_passes_its_promtool_tests(monitored_project: Path) -> None:
    prometheus = monitored_project / "monitoring/prometheus"
    tests = sorted(str(path) for path in (prometheus / "tests").glob("*_test.yml"))
    result = subprocess.run(
        [tool("promtool"), "test", "rules", *tests], cwd=prometheus, capture_output=True, text=True
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
    monitored: Project, migrated_database_url: str, tmp_path: Path
) -> None:
    with service(monitored, migrated_database_url, 2, tmp_path) as server:
        counter = 'http_requests_total{method="GET",route="/healthz",status_class="2xx"}'
        # `serve` waited for the service through /healthz: count from there.
        before = scrape(server)[counter]
        requests = 200
        for _ in range(requests):
            assert server.get("/healthz").status == 200
        # Each scrape lands on either worker; every one must see the sum of both.
        scrapes = [scrape(server) for _ in range(6)]
        assert [samples[counter] for samples in scrapes] == [before + requests] * 6
        assert all(len(pids(samples)) == 2 for samples in scrapes)


def test_metrics_read_by_rules_and_dashboard_are_exported(
    monitored_project: Path, running_service: Server
) -> None:
    traffic = ["/healthz", "/readyz", "/api/users", "/api/posts", "/api/posts", "/api/posts/999"]
    for path in [*traffic, "/no/such/page"]:
        running_service.get(path)
    samples = scrape(running_service)

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
