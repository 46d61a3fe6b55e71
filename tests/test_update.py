"""Updating generated projects to a newer template version keeps the user's edits.

Both ways a project comes to be are covered: `copier copy` from the template's git
repository, and `fastapi-easy new` from an installed wheel (which renders from the copy
bundled in the wheel and records the template's git URL and version tag for later).
"""

import subprocess
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from fastapi_easy import __version__

from .conftest import CURRENT_TAG
from .project import clean_env, commit_and_tag, find_python, git, render, snapshot_repo, tool

NEXT_TAG = "v99.0.0"
USER_LINE = "Our on-call rota lives in the wiki."


def commit_project(project: Path) -> None:
    git(project, "init", "-q", "-b", "main")
    git(project, "add", "-A")
    git(project, "commit", "-q", "-m", "generated")


def edit_and_commit(project: Path) -> None:
    readme = project / "README.md"
    readme.write_text(readme.read_text() + f"\n## Operations\n\n{USER_LINE}\n")
    (project / "src" / "my_service" / "orders.py").write_text('"""Our own module."""\n')
    git(project, "add", "-A")
    git(project, "commit", "-q", "-m", "our edits")


def release_new_template_version(repo: Path) -> None:
    gitignore = repo / "template" / ".gitignore"
    added = "# added in the next template version\n.mypy_cache/\n"
    gitignore.write_text(gitignore.read_text() + added)
    (repo / "template" / "CHANGES.md").write_text("# Changes\n\nNew in the next version.\n")
    commit_and_tag(repo, NEXT_TAG, "next template version")


def assert_updated_and_edits_kept(project: Path) -> None:
    assert USER_LINE in (project / "README.md").read_text()
    assert (project / "src" / "my_service" / "orders.py").is_file()
    assert ".mypy_cache/" in (project / ".gitignore").read_text()
    assert (project / "CHANGES.md").is_file()
    assert not list(project.rglob("*.rej"))
    answers = yaml.safe_load((project / ".copier-answers.yml").read_text())
    assert answers["_commit"] == NEXT_TAG
    for path in project.rglob("*"):
        if path.is_file() and ".git" not in path.parts:
            assert "<<<<<<<" not in path.read_text(errors="replace"), path


def copier_update(project: Path) -> None:
    """Plain `copier update`, as a user without fastapi-easy installed runs it."""
    result = subprocess.run(
        [tool("copier"), "update", "--defaults", "--skip-answered"],
        cwd=project,
        capture_output=True,
        text=True,
        env=clean_env(),
    )
    assert result.returncode == 0, result.stderr


@pytest.fixture
def template(tmp_path: Path) -> Path:
    return snapshot_repo(tmp_path / "template", CURRENT_TAG)


def test_copier_copy_project_updates_with_copier(template: Path, tmp_path: Path) -> None:
    project = render(template, tmp_path / "proj", {"project_name": "My Service"}, ref=CURRENT_TAG)
    commit_project(project)
    edit_and_commit(project)
    release_new_template_version(template)

    copier_update(project)
    assert_updated_and_edits_kept(project)


@pytest.fixture(scope="module")
def wheel_cli(
    tmp_path_factory: pytest.TempPathFactory,
) -> Callable[..., subprocess.CompletedProcess[str]]:
    """`fastapi-easy` from a wheel built from the working tree, installed in a fresh venv."""
    work = tmp_path_factory.mktemp("wheel")
    source = snapshot_repo(work / "src", CURRENT_TAG)
    subprocess.run(
        [tool("uv"), "build", "--wheel", "--out-dir", str(work / "dist"), str(source)],
        check=True,
        capture_output=True,
        env=clean_env(),
    )
    (wheel,) = (work / "dist").glob("fastapi_easy-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "fastapi_easy/_template/copier.yml" in names
    assert any(n.startswith("fastapi_easy/_template/template/src/") for n in names)
    venv = work / "venv"
    subprocess.run(
        [tool("uv"), "venv", "-q", "--python", find_python("3.11"), str(venv)],
        check=True,
        env=clean_env(),
    )
    subprocess.run(
        [tool("uv"), "pip", "install", "-q", "--python", str(venv / "bin" / "python"), str(wheel)],
        check=True,
        env=clean_env(),
    )

    def run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(venv / "bin" / "fastapi-easy"), *args],
            cwd=cwd,
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            env=clean_env(),
        )

    return run


def new_project(wheel_cli, template: Path, tmp_path: Path) -> Path:
    result = wheel_cli(
        "new",
        "proj",
        "--defaults",
        "--name",
        "My Service",
        "--template",
        str(template),
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    return tmp_path / "proj"


def test_installed_wheel_reports_its_version(wheel_cli, tmp_path: Path) -> None:
    result = wheel_cli("--version", cwd=tmp_path)
    assert result.stdout.strip() == f"fastapi-easy {__version__}"


def test_fastapi_easy_new_project_updates_with_fastapi_easy_update(
    wheel_cli, template: Path, tmp_path: Path
) -> None:
    project = new_project(wheel_cli, template, tmp_path)
    answers = yaml.safe_load((project / ".copier-answers.yml").read_text())
    assert answers["_src_path"] == str(template)
    assert answers["_commit"] == CURRENT_TAG
    commit_project(project)
    edit_and_commit(project)
    release_new_template_version(template)

    result = wheel_cli("update", "--defaults", cwd=project)
    assert result.returncode == 0, result.stderr
    assert_updated_and_edits_kept(project)


def test_update_reports_conflicts(wheel_cli, template: Path, tmp_path: Path) -> None:
    project = new_project(wheel_cli, template, tmp_path)
    commit_project(project)
    (project / ".gitignore").write_text(
        "# ours\n"
        + (project / ".gitignore").read_text().replace("__pycache__/", "__pycache__/ # ours")
    )
    git(project, "commit", "-q", "-am", "our gitignore")
    ignore = template / "template" / ".gitignore"
    ignore.write_text(ignore.read_text().replace("__pycache__/", "**/__pycache__/"))
    commit_and_tag(template, NEXT_TAG, "conflicting change")

    result = wheel_cli("update", "--defaults", cwd=project)
    assert result.returncode == 1
    assert "conflicts in 1 file(s): .gitignore" in result.stderr
    assert "<<<<<<<" in (project / ".gitignore").read_text()
