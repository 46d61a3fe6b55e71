"""Rendering: every answer, one factor at a time over the defaults, plus full combinations.

Each rendering is scanned for unrendered Jinja and must be ruff-clean as generated (so
`ruff check --fix` and `ruff format` change nothing), and its GitHub workflow must match
the workflow schema.
"""

import itertools
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from fastapi_easy.template import choices, questions

from .project import features_for, render, tool

QUESTION_NAMES = list(questions())
# `{{ … }}` is legitimate in Prometheus annotations ({{ $value }}) and Grafana legends
# ({{route}}); what must never survive is Jinja that names one of our answers or Copier.
LEFTOVER_EXPRESSION = re.compile(
    r"\{\{[^}]*\b(" + "|".join([*QUESTION_NAMES, "_copier_conf", "_copier_answers"]) + r")\b"
)
# Features that only make sense with other answers (copier.yml's validator enforces it).
REQUIRES: dict[str, dict[str, Any]] = {
    "alerts": {"features": ["metrics"]},
    "k8s": {"database": "postgresql"},
}
LEFTOVER_STATEMENT = re.compile(r"\{%-?\s|\s-?%\}|\{#\s")


def one_factor_cases() -> list[tuple[str, dict[str, Any]]]:
    cases: list[tuple[str, dict[str, Any]]] = [("defaults", {})]
    for name, question in questions().items():
        if question.get("type") == "bool":
            other = not question["default"]
            cases.append((f"{name}={other}".lower(), {name: other}))
            continue
        if "choices" not in question:
            continue
        values = choices(name)
        if question.get("multiselect"):
            cases.append((f"{name}=none", {name: []}))
            for value in values:
                required = REQUIRES.get(value, {})
                answers = {**required, name: [value, *required.get(name, [])]}
                cases.append((f"{name}={value}", answers))
            default_database = questions()["database"]["default"]
            cases.append((f"{name}=all", {name: features_for(default_database)}))
        else:
            cases += [(f"{name}={v}", {name: v}) for v in values if v != question.get("default")]
    cases.append(
        (
            "custom-text",
            {
                "project_name": "Billing Service 2",
                "project_slug": "billing-svc",
                "package_name": "billing_core",
                "description": "Says 'hello', it's fine: 100% (ok)",
                "author_name": "Zoë O'Brien",
                "author_email": "zoe@example.org",
            },
        )
    )
    return cases


def full_combinations() -> list[tuple[str, dict[str, Any]]]:
    cases = []
    for database, cache_backend in itertools.product(choices("database"), choices("cache")):
        answers = {"database": database, "cache": cache_backend, "features": features_for(database)}
        cases.append((f"{database}-{cache_backend}-all", answers))
        no_examples = {**answers, "examples": False}
        cases.append((f"{database}-{cache_backend}-all-no-examples", no_examples))
    cases.append(("no-examples-auth", {"examples": False, "features": ["auth"]}))
    return cases


ALL_CASES = one_factor_cases() + full_combinations()


def scan_for_jinja(root: Path) -> list[str]:
    problems = []
    for path in root.rglob("*"):
        rel = path.relative_to(root).as_posix()
        if "{{" in rel or "{%" in rel or rel.endswith(".jinja"):
            problems.append(f"{rel}: unrendered file name")
        if not path.is_file() or ".git/" in rel:
            continue
        text = path.read_text(encoding="utf-8")
        for lineno, line in enumerate(text.splitlines(), 1):
            if LEFTOVER_EXPRESSION.search(line) or LEFTOVER_STATEMENT.search(line):
                problems.append(f"{rel}:{lineno}: {line.strip()}")
    return problems


@pytest.fixture(scope="module")
def rendered(template_repo: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = {}
    for case_id, answers in ALL_CASES:
        out[case_id] = render(template_repo, tmp_path_factory.mktemp(case_id), answers)
    return out


@pytest.mark.parametrize("case_id", [case_id for case_id, _ in ALL_CASES])
def test_no_unrendered_jinja(rendered: dict[str, Path], case_id: str) -> None:
    assert scan_for_jinja(rendered[case_id]) == []


@pytest.mark.parametrize("case_id", [case_id for case_id, _ in ALL_CASES])
def test_output_is_ruff_clean(rendered: dict[str, Path], case_id: str) -> None:
    project = rendered[case_id]
    for args in (["check", "--no-cache", "."], ["format", "--no-cache", "--check", "."]):
        result = subprocess.run([tool("ruff"), *args], cwd=project, capture_output=True, text=True)
        assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("case_id", [case_id for case_id, _ in full_combinations()])
def test_github_workflow_matches_schema(rendered: dict[str, Path], case_id: str) -> None:
    workflow = rendered[case_id] / ".github" / "workflows" / "ci.yml"
    result = subprocess.run(
        [tool("check-jsonschema"), "--builtin-schema", "vendor.github-workflows", str(workflow)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def cases_with(feature: str) -> list[str]:
    return [case_id for case_id, answers in ALL_CASES if feature in answers.get("features", [])]


def answers_of(case_id: str) -> dict[str, Any]:
    defaults = {name: q.get("default") for name, q in questions().items()}
    return {**defaults, **dict(ALL_CASES)[case_id]}


@pytest.mark.parametrize("case_id", cases_with("docker"))
def test_compose_file_matches_the_compose_specification(
    rendered: dict[str, Path], case_id: str
) -> None:
    compose = rendered[case_id] / "compose.yaml"
    result = subprocess.run(
        [tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(compose)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("case_id", cases_with("docker"))
def test_compose_runs_migrations_before_the_service(
    rendered: dict[str, Path], case_id: str
) -> None:
    project, answers = rendered[case_id], answers_of(case_id)
    services = yaml.safe_load((project / "compose.yaml").read_text())["services"]
    assert services["migrate"]["command"] == ["alembic", "upgrade", "head"]
    assert services["app"]["depends_on"]["migrate"] == {
        "condition": "service_completed_successfully"
    }
    expected = {"app", "migrate"}
    expected |= {"postgres"} if answers["database"] == "postgresql" else set()
    expected |= {"redis"} if answers["cache"] == "redis" else set()
    expected |= {"prometheus", "grafana"} if "alerts" in answers["features"] else set()
    assert set(services) == expected
    # The app's health check is the image's HEALTHCHECK; the others declare theirs.
    for name in expected - {"app", "migrate"}:
        assert services[name]["healthcheck"]["test"], name
    for name, service in services.items():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith("./"):
                assert (project / source).is_dir(), f"{name} mounts missing {source}"


@pytest.mark.parametrize("case_id", [c for c in cases_with("docker") if c in cases_with("alerts")])
def test_compose_prometheus_config_loads_the_rules(
    rendered: dict[str, Path], case_id: str, tmp_path: Path
) -> None:
    """Prometheus in Compose reads its config from compose.yaml, the rules from monitoring/."""
    compose = yaml.safe_load((rendered[case_id] / "compose.yaml").read_text())
    shutil.copytree(rendered[case_id] / "monitoring" / "prometheus", tmp_path / "prometheus")
    config = tmp_path / "prometheus" / "compose.yml"
    config.write_text(compose["configs"]["prometheus"]["content"])
    result = subprocess.run(
        [tool("promtool"), "check", "config", str(config)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
    rule_files = list((tmp_path / "prometheus" / "rules").glob("*.yml"))
    assert f"SUCCESS: {len(rule_files)} rule files found" in result.stdout


def test_dockerfile_serves_the_project_command(rendered: dict[str, Path]) -> None:
    dockerfile = (rendered["features=docker"] / "Dockerfile").read_text()
    assert "ARG PYTHON_IMAGE=python:3.12-slim" in dockerfile
    assert "uv sync --frozen --no-dev" in dockerfile
    assert 'CMD ["my-service"]' in dockerfile
    assert "\nUSER 10001:10001\n" in dockerfile


# The oldest and the newest Kubernetes whose schemas kubernetes-validate bundles, of those
# still commonly run.
KUBERNETES_VERSIONS = ["1.30.0", "1.37.0"]


def manifests(project: Path) -> dict[str, dict[str, Any]]:
    return {p.name: yaml.safe_load(p.read_text()) for p in sorted((project / "k8s").glob("*.yaml"))}


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("case_id", cases_with("k8s"))
def test_kubernetes_manifests_pass_strict_validation(
    rendered: dict[str, Path], case_id: str, version: str
) -> None:
    k8s = rendered[case_id] / "k8s"
    resources = sorted(str(p) for p in k8s.glob("*.yaml") if p.name != "kustomization.yaml")
    result = subprocess.run(
        [tool("kubernetes-validate"), "--strict", "--kubernetes-version", version, *resources],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count(" passed for resource ") == len(resources), result.stdout


@pytest.mark.parametrize("case_id", cases_with("k8s"))
def test_kubernetes_manifests_fit_together(rendered: dict[str, Path], case_id: str) -> None:
    found = manifests(rendered[case_id])
    kustomization = found.pop("kustomization.yaml")
    assert sorted(kustomization["resources"]) == sorted(set(found) - {"migration-job.yaml"})
    assert "Secret" not in {resource["kind"] for resource in found.values()}

    deployment = found["deployment.yaml"]
    pod = deployment["spec"]["template"]
    labels = pod["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"] == labels
    assert found["service.yaml"]["spec"]["selector"] == labels
    assert found["pdb.yaml"]["spec"]["selector"]["matchLabels"] == labels
    target = found["hpa.yaml"]["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", deployment["metadata"]["name"])
    assert "replicas" not in deployment["spec"]

    (api,) = pod["spec"]["containers"]
    assert api["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert api["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert api["lifecycle"]["preStop"]["exec"]["command"][0] == "sleep"
    pre_stop = int(api["lifecycle"]["preStop"]["exec"]["command"][1])
    assert pod["spec"]["terminationGracePeriodSeconds"] > pre_stop
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True

    dockerfile = rendered[case_id] / "Dockerfile"
    if dockerfile.exists():
        # The pod's user and port are the image's.
        context = pod["spec"]["securityContext"]
        assert f"\nUSER {context['runAsUser']}:{context['runAsGroup']}\n" in dockerfile.read_text()
        assert f"PORT={api['ports'][0]['containerPort']}" in dockerfile.read_text()

    job = found["migration-job.yaml"]["spec"]["template"]["spec"]
    (migrate,) = job["containers"]
    assert migrate["command"] == ["alembic", "upgrade", "head"]
    assert migrate["image"] == api["image"]
    # Secrets are referenced by name and key, never written down.
    secret = deployment["metadata"]["name"]
    for container in (api, migrate):
        for variable in container["env"]:
            assert variable["valueFrom"]["secretKeyRef"]["name"] == secret
        assert container["envFrom"] == [{"configMapRef": {"name": secret}}]


def test_answers_file_records_answers_and_no_secret(rendered: dict[str, Path]) -> None:
    answers = yaml.safe_load((rendered["defaults"] / ".copier-answers.yml").read_text())
    assert answers["database"] == "sqlite"
    assert answers["cache"] == "memory"
    assert "_commit" in answers
    assert not any("secret" in key.lower() for key in answers)


def test_custom_names_are_used(rendered: dict[str, Path]) -> None:
    project = rendered["custom-text"]
    assert (project / "src" / "billing_core" / "main.py").is_file()
    pyproject = (project / "pyproject.toml").read_text()
    assert 'name = "billing-svc"' in pyproject
    assert 'billing-svc = "billing_core.__main__:main"' in pyproject


# What a project without the example blog keeps, and what it must not have.
NO_EXAMPLES_CORE = [
    "src/my_service/core/cache.py",
    "src/my_service/health/router.py",
    "src/my_service/domains.py",
    "tests/test_schema.py",
    "tests/test_http.py",
    "tests/test_errors.py",
    "bench/cache_hit_rate.py",
]
EXAMPLE_FILES = [
    "src/my_service/posts",
    "src/my_service/comments",
    "src/my_service/seed.py",
    "src/my_service/users/authorship.py",
    "migrations/versions/20261128_0001_initial.py",
    "tests/factories.py",
    "tests/test_posts.py",
    "tests/test_user_posts.py",
    "tests/test_comments.py",
    "tests/test_invalidation.py",
    "tests/test_indexes.py",
    "tests/test_queries.py",
    "tests/test_export.py",
    "bench/mixed_load.py",
    "bench/list_posts.py",
    "bench/middleware_cost.py",
    "bench/json_paths.py",
    "bench/loadtest.py",
    "bench/soak.py",
    "bench/workload.py",
    "bench/locustfile.py",
    "bench/compare_servers.py",
    "tests/test_hostile_input.py",
    "tests/test_secrets.py",
]


@pytest.mark.parametrize(
    ("answers", "present", "absent"),
    [
        ({"cache": "memory"}, [], ["src/my_service/core/redis.py"]),
        ({"cache": "redis"}, ["src/my_service/core/redis.py"], []),
        ({"database": "sqlite"}, [], ["tests/test_connection_budget.py"]),
        ({"database": "postgresql"}, ["tests/test_connection_budget.py"], []),
        ({"features": []}, [], ["src/my_service/auth", "tests/test_auth.py"]),
        (
            {"cache": "redis", "features": ["auth", "rate_limit"]},
            ["tests/test_auth.py", "tests/test_auth_redis.py", "tests/test_ratelimit_auth.py"],
            [],
        ),
        ({"features": ["auth"]}, ["src/my_service/auth/deps.py"], ["tests/test_auth_redis.py"]),
        ({}, [], ["Dockerfile", ".dockerignore", "compose.yaml", "k8s"]),
        ({"features": ["docker"]}, ["Dockerfile", ".dockerignore", "compose.yaml"], ["k8s"]),
        (
            {"database": "postgresql", "features": ["k8s"]},
            ["k8s/deployment.yaml", "k8s/migration-job.yaml"],
            ["Dockerfile"],
        ),
        (
            {"examples": False},
            [*NO_EXAMPLES_CORE, "migrations/versions/20261128_0001_empty.py"],
            [*EXAMPLE_FILES, "src/my_service/users", "tests/test_users.py"],
        ),
        (
            {"examples": False, "features": ["auth"]},
            [
                *NO_EXAMPLES_CORE,
                "src/my_service/users/service.py",
                "tests/test_users.py",
                "tests/test_auth.py",
                "migrations/versions/20261128_0001_users.py",
                "migrations/versions/20261128_0002_credentials.py",
            ],
            [*EXAMPLE_FILES, "migrations/versions/20261128_0001_empty.py"],
        ),
        (
            {},
            [
                "migrations/versions/20261128_0001_initial.py",
                "tests/test_posts.py",
                "bench/soak.py",
            ],
            [
                "migrations/versions/20261128_0001_users.py",
                "migrations/versions/20261128_0001_empty.py",
            ],
        ),
        ({"features": ["auth"]}, ["bench/loadtest.py"], ["bench/soak.py"]),
    ],
)
def test_choices_switch_whole_files(
    template_repo: Path,
    tmp_path: Path,
    answers: dict[str, str],
    present: list[str],
    absent: list[str],
) -> None:
    project = render(template_repo, tmp_path / "p", answers)
    present = [rel.replace("migrations/", "src/my_service/migrations/", 1) for rel in present]
    absent = [rel.replace("migrations/", "src/my_service/migrations/", 1) for rel in absent]
    for rel in present:
        assert (project / rel).is_file(), rel
    for rel in absent:
        assert not (project / rel).exists(), rel


def test_redis_leaves_no_trace_when_off(rendered: dict[str, Path]) -> None:
    project = rendered["defaults"]
    for path in project.rglob("*"):
        if path.is_file() and path.name != "README.md":
            assert "redis" not in path.read_text(encoding="utf-8").lower(), path


@pytest.mark.parametrize(
    ("answers", "message"),
    [
        ({"project_name": "9lives"}, "must start with a letter"),
        ({"project_slug": "Bad_Slug"}, "slug must be lowercase"),
        ({"package_name": "my-pkg"}, "lowercase Python identifier"),
        ({"package_name": "fastapi"}, "would shadow"),
        ({"author_email": "nobody"}, "is not an e-mail"),
        ({"description": 'say "hi"'}, "without double quotes"),
        ({"database": "mysql"}, "mysql"),
        ({"features": ["alerts"]}, "select metrics too"),
        ({"features": ["k8s"]}, "choose database=postgresql"),
    ],
)
def test_invalid_answers_are_refused(
    template_repo: Path, tmp_path: Path, answers: dict[str, str], message: str
) -> None:
    dest = tmp_path / "p"
    with pytest.raises(ValueError, match=message):
        render(template_repo, dest, answers)
    assert not dest.exists()


NO_EXAMPLE_CASES = [case_id for case_id, answers in ALL_CASES if answers.get("examples") is False]
BLOG_IMPORT = re.compile(r"^\s*(from|import) \S*\b(posts|comments|factories|seed)\b", re.MULTILINE)
# What in the READMEs would send a reader to the missing blog: its endpoints, modules,
# tests, seed command and the benchmarks that load it.
BLOG_POINTER = re.compile(
    r"/api/(posts|comments)|\b(posts|comments)/|\bPost[A-Z]\w*|-seed\b|test_(posts|comments|queries)\b"
    r"|bench/(mixed_load|list_posts|middleware_cost|json_paths)\.py|\(#(mixed_load|list_posts)"
)


@pytest.mark.parametrize("case_id", NO_EXAMPLE_CASES)
def test_no_examples_leaves_no_trace_of_the_blog(rendered: dict[str, Path], case_id: str) -> None:
    """No module imports the blog, and the READMEs point to nothing it had. (The bench
    README's measurements were taken on the blog and say so.)"""
    project = rendered[case_id]
    imports = [
        f"{path.relative_to(project)}: {match.group(0).strip()}"
        for path in project.rglob("*.py")
        for match in BLOG_IMPORT.finditer(path.read_text(encoding="utf-8"))
    ]
    assert imports == []
    readme = (project / "README.md").read_text(encoding="utf-8")
    assert [m.group(0) for m in BLOG_POINTER.finditer(readme)] == []
    bench = (project / "bench" / "README.md").read_text(encoding="utf-8")
    measurements = bench.index("## Measurements behind the code's comments")
    assert [m.group(0) for m in BLOG_POINTER.finditer(bench[:measurements])] == []
    for script in ("mixed_load", "list_posts", "middleware_cost", "json_paths"):
        assert f"## {script}.py" not in bench
    assert "seed" not in (project / "pyproject.toml").read_text()
