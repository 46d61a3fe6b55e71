"""The `fastapi-easy` command.

Flags map to answers one to one; bad input is one line on stderr, a non-zero exit, and
nothing written.
"""

import keyword
import subprocess
from pathlib import Path

import pytest
import yaml

from fastapi_easy import __version__
from fastapi_easy.template import DEFAULT_TEMPLATE_URL, TEMPLATE_URL_ENV

from .project import REPO_ROOT, clean_env, tool


def cli(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None):
    return subprocess.run(
        [tool("fastapi-easy"), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        env=clean_env(env),
        timeout=300,
    )


def answers_of(project: Path) -> dict:
    return yaml.safe_load((project / ".copier-answers.yml").read_text())


def assert_one_line_error(result: subprocess.CompletedProcess[str], fragment: str) -> None:
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines, result.stderr
    assert lines[-1].startswith("error: "), result.stderr
    assert fragment in lines[-1]


def test_version() -> None:
    result = cli("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"fastapi-easy {__version__}"


def test_help_names_every_feature_and_each_switch_once() -> None:
    help_text = " ".join(cli("new", "--help").stdout.split())  # unwrapped
    features = yaml.safe_load((REPO_ROOT / "copier.yml").read_text())["features"]["choices"]
    for feature in features.values() if isinstance(features, dict) else features:
        assert feature in help_text
    for switch in ("--no-features", "--defaults", "--no-input", "--force"):
        assert switch in help_text
    assert "--no-no-" not in help_text
    assert "--no-defaults" not in help_text


def test_new_with_defaults_names_the_project_after_the_folder(tmp_path: Path) -> None:
    result = cli("new", "order-api", "--defaults", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    project = tmp_path / "order-api"
    answers = answers_of(project)
    assert answers["project_name"] == "order-api"
    assert answers["project_slug"] == "order-api"
    assert answers["package_name"] == "order_api"
    assert answers["database"] == "sqlite"
    assert answers["examples"] is True
    assert answers["_src_path"] == DEFAULT_TEMPLATE_URL
    assert answers["_commit"] == f"v{__version__}"
    assert (project / "src" / "order_api" / "main.py").is_file()
    assert "uv run order-api" in result.stdout


def test_every_flag_reaches_the_answers(tmp_path: Path) -> None:
    result = cli(
        "new",
        str(tmp_path / "x"),
        "--name",
        "Shop Backend",
        "--slug",
        "shop",
        "--package",
        "shop_core",
        "--description",
        "Sells things",
        "--author-name",
        "Ada",
        "--author-email",
        "ada@example.org",
        "--python-version",
        "3.13",
        "--database",
        "postgresql",
        "--cache",
        "redis",
        "--no-features",
        "--no-examples",
        "--template",
        "https://example.org/mirror.git",
    )
    assert result.returncode == 0, result.stderr
    answers = answers_of(tmp_path / "x")
    assert {k: v for k, v in answers.items() if not k.startswith("_")} == {
        "project_name": "Shop Backend",
        "project_slug": "shop",
        "package_name": "shop_core",
        "description": "Sells things",
        "author_name": "Ada",
        "author_email": "ada@example.org",
        "python_version": "3.13",
        "database": "postgresql",
        "cache": "redis",
        "features": [],
        "examples": False,
    }
    assert answers["_src_path"] == "https://example.org/mirror.git"
    assert not (tmp_path / "x" / "src" / "shop_core" / "posts").exists()


def test_examples_flag_keeps_the_blog(tmp_path: Path) -> None:
    result = cli("new", str(tmp_path / "blog"), "--defaults", "--examples", "--feature", "auth")
    assert result.returncode == 0, result.stderr
    assert answers_of(tmp_path / "blog")["examples"] is True
    assert (tmp_path / "blog" / "src" / "blog" / "posts" / "router.py").is_file()


def test_template_url_from_environment(tmp_path: Path) -> None:
    result = cli("new", str(tmp_path / "x"), "--defaults", env={TEMPLATE_URL_ENV: "/srv/tpl.git"})
    assert result.returncode == 0, result.stderr
    assert answers_of(tmp_path / "x")["_src_path"] == "/srv/tpl.git"


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--database", "mysql"], "--database must be one of sqlite, postgresql"),
        (["--cache", "memcached"], "--cache must be one of memory, redis"),
        (["--feature", "telepathy"], "--feature must be one of"),
        (["--python-version", "3.9"], "--python-version must be one of"),
        (["--name", "1st service"], "must start with a letter"),
        (["--package", "class-name"], "lowercase Python identifier"),
        (["--package", "class"], "is a Python keyword"),
        (["--author-email", "not-an-email"], "is not an e-mail address"),
        (["--feature", "metrics", "--no-features"], "exclude each other"),
    ],
)
def test_bad_input_is_one_clear_line_and_writes_nothing(
    tmp_path: Path, args: list[str], fragment: str
) -> None:
    result = cli("new", str(tmp_path / "p"), "--defaults", *args)
    assert_one_line_error(result, fragment)
    assert not (tmp_path / "p").exists()


def test_every_python_keyword_is_refused_as_a_package_name() -> None:
    validator = yaml.safe_load((REPO_ROOT / "copier.yml").read_text())["package_name"]["validator"]
    keywords = [word for word in keyword.kwlist if word.islower()]
    assert [word for word in keywords if f"'{word}'" not in validator] == []


@pytest.mark.parametrize(
    ("folder", "slug", "package"),
    [
        ("my service", "my-service", "my_service"),
        ("a..b", "a-b", "a_b"),
        ("Order API", "order-api", "order_api"),
    ],
)
def test_odd_folder_names_become_a_safe_slug_and_package(
    tmp_path: Path, folder: str, slug: str, package: str
) -> None:
    result = cli("new", folder, "--defaults", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    answers = answers_of(tmp_path / folder)
    assert (answers["project_name"], answers["project_slug"]) == (folder, slug)
    assert answers["package_name"] == package
    assert (tmp_path / folder / "src" / package / "main.py").is_file()
    assert [p.name for p in tmp_path.iterdir()] == [folder]


@pytest.mark.parametrize(
    ("folder", "fragment"),
    [
        ("naïve", "must start with a letter"),
        ("服务", "must start with a letter"),
        ("1st", "must start with a letter"),
        ("class", "is a Python keyword"),
        ("import", "is a Python keyword"),
        ("json", "would shadow a module"),
    ],
)
def test_unusable_folder_names_are_refused_and_write_nothing(
    tmp_path: Path, folder: str, fragment: str
) -> None:
    result = cli("new", folder, "--defaults", cwd=tmp_path)
    assert_one_line_error(result, fragment)
    assert list(tmp_path.iterdir()) == []


def test_a_path_through_the_parent_writes_only_the_folder_it_names(tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    result = cli("new", "../x", "--defaults", cwd=work)
    assert result.returncode == 0, result.stderr
    assert list(work.iterdir()) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["work", "x"]
    assert answers_of(tmp_path / "x")["project_name"] == "x"


def test_unknown_flag_is_refused(tmp_path: Path) -> None:
    result = cli("new", str(tmp_path / "p"), "--frobnicate")
    assert result.returncode == 2
    assert "No such option" in result.stderr
    assert not (tmp_path / "p").exists()


def test_missing_parent_is_refused(tmp_path: Path) -> None:
    result = cli("new", str(tmp_path / "missing" / "p"), "--defaults")
    assert_one_line_error(result, "does not exist")
    assert not (tmp_path / "missing").exists()


def test_non_empty_destination_is_refused_and_kept(tmp_path: Path) -> None:
    dest = tmp_path / "p"
    dest.mkdir()
    (dest / "notes.txt").write_text("mine")
    result = cli("new", str(dest), "--defaults")
    assert_one_line_error(result, "is not empty")
    assert [p.name for p in dest.iterdir()] == ["notes.txt"]
    assert (dest / "notes.txt").read_text() == "mine"


def test_force_renders_into_a_non_empty_destination_keeping_other_files(tmp_path: Path) -> None:
    dest = tmp_path / "p"
    dest.mkdir()
    (dest / "notes.txt").write_text("mine")
    result = cli("new", str(dest), "--defaults", "--force")
    assert result.returncode == 0, result.stderr
    assert (dest / "notes.txt").read_text() == "mine"
    assert (dest / "pyproject.toml").is_file()


def test_destination_that_is_a_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "p").write_text("x")
    result = cli("new", str(tmp_path / "p"), "--defaults")
    assert_one_line_error(result, "is not a folder")


def test_update_refuses_a_folder_that_is_not_a_generated_project(tmp_path: Path) -> None:
    result = cli("update", str(tmp_path))
    assert_one_line_error(result, "is not a generated project")


def test_update_refuses_a_dirty_project(tmp_path: Path) -> None:
    assert cli("new", str(tmp_path / "p"), "--defaults").returncode == 0
    subprocess.run(["git", "init", "-q"], cwd=tmp_path / "p", check=True)
    result = cli("update", str(tmp_path / "p"))
    assert_one_line_error(result, "dirty")
