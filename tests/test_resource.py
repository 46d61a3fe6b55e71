"""`fastapi-easy add resource`: refusals that write nothing, the scaffold end to end, and
updates of a project that has added resources."""

import subprocess
from pathlib import Path

import pytest
import yaml

from .conftest import CURRENT_TAG
from .project import Project, commit_and_tag, git, render, snapshot_repo, tool
from .test_update import NEXT_TAG, commit_project, copier_update

PRODUCTS = ["products", "name:str", "price:decimal", "category:str:index", "owner_id:ref:users"]
PRODUCTS += ["sku:str:unique"]
REVIEWS = ["reviews", "body:text", "stars:int:index", "product_id:ref:products"]
REVIEWS += ["day:date:optional", "tag:uuid:optional", "meta:json:optional", "at:datetime"]
REVIEWS += ["flag:bool:index", "weight:float", "post_id:ref:posts:optional"]


def add(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [tool("fastapi-easy"), "add", "resource", *args, "--no-input"],
        cwd=project,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
    )


def snapshot(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and ".git" not in p.parts
    }


@pytest.fixture(scope="module")
def rendered(template_repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return render(template_repo, tmp_path_factory.mktemp("res") / "shop", {"project_name": "Shop"})


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["Products", "name:str"], "is not a resource name"),
        (["../products", "name:str"], "is not a resource name"),
        (["products/../../x", "name:str"], "is not a resource name"),
        (["my products", "name:str"], "is not a resource name"),
        (["prödücts", "name:str"], "is not a resource name"),
        (["", "name:str"], "is not a resource name"),
        (["products", "../name:str"], "not a usable field name"),
        (["users", "name:str"], "is reserved"),
        (["core", "name:str"], "is reserved"),
        (["product", "name:str"], "in the plural"),
        (["products"], "at least one field"),
        (["products", "name"], "NAME:TYPE"),
        (["products", "name:money"], "unknown type 'money'"),
        (["products", "name:str:sorted"], "unknown modifier 'sorted'"),
        (["products", "owner_id:ref:shops"], "no resource 'shops'"),
        (["products", "owner_id:ref:comments"], "has no cache tag"),
        (["products", "id:int"], "not a usable field name"),
        (["products", "class:str"], "not a usable field name"),
        (["products", "product_id:int"], "names the products row itself"),
        (["products", "name:str", "name:text"], "named twice"),
        (["products", "notes:json:index"], "cannot be indexed"),
        (["products", "flag:bool:unique"], "cannot be unique"),
        (["short_texts", "name:str"], "would shadow a type of its schemas"),
    ],
)
def test_bad_input_is_one_clear_line_and_writes_nothing(
    rendered: Path, args: list[str], message: str
) -> None:
    before = snapshot(rendered)
    result = add(rendered, *args)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert message in lines[0]
    assert snapshot(rendered) == before


def test_outside_a_generated_project_is_refused(tmp_path: Path) -> None:
    result = add(tmp_path, *PRODUCTS)
    assert result.returncode == 1
    assert "not inside a generated project" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_a_project_without_the_shared_field_types_is_told_to_update(
    template_repo: Path, tmp_path: Path
) -> None:
    """Scaffolded schemas import ``core/fields.py``; a project generated before it existed
    is refused with the command that brings it, and nothing is written."""
    project = render(template_repo, tmp_path / "shop", {"project_name": "Shop"})
    (project / "src/shop/core/fields.py").unlink()
    before = snapshot(project)
    result = add(project, *PRODUCTS)
    assert result.returncode == 1
    assert "no src/shop/core/fields.py); run `fastapi-easy update` first" in result.stderr
    assert snapshot(project) == before


def test_a_project_without_the_read_engine_is_told_to_update(
    template_repo: Path, tmp_path: Path
) -> None:
    """Scaffolded routers read through ``Database.reads``; a project generated before it
    existed is refused the same way."""
    project = render(template_repo, tmp_path / "shop", {"project_name": "Shop"})
    db = project / "src/shop/core/db.py"
    db.write_text(db.read_text().replace("    reads: AsyncEngine\n", ""))
    before = snapshot(project)
    result = add(project, *PRODUCTS)
    assert result.returncode == 1
    assert "no src/shop/core/db.py with `reads: AsyncEngine`); run" in result.stderr
    assert snapshot(project) == before


def test_an_existing_resource_is_refused(template_repo: Path, tmp_path: Path) -> None:
    project = render(template_repo, tmp_path / "shop", {"project_name": "Shop"})
    assert add(project, *PRODUCTS).returncode == 0
    before = snapshot(project)
    result = add(project, *PRODUCTS)
    assert result.returncode == 1
    assert "exists already" in result.stderr
    assert snapshot(project) == before


@pytest.mark.e2e
def test_scaffolded_resources_pass_their_tests_lint_and_migrate(
    template_repo: Path, tmp_path: Path
) -> None:
    """Two resources, one referencing the other and the examples, every type and modifier:
    the project's own suite (CRUD, refusals, values past the columns' limits, statement
    counts, indexes, cache, invalidation, migrations in sync), its linters and `alembic
    check` all pass."""
    answers = {"project_name": "Shop", "python_version": "3.11"}
    project = Project(render(template_repo, tmp_path / "shop", answers))
    for args in (PRODUCTS, REVIEWS):
        result = add(project.path, *args)
        assert result.returncode == 0, result.stderr
    project.sync("3.11")
    project.uv("ruff", "check", ".")
    project.uv("ruff", "format", "--check", ".")
    output = project.uv("pytest", "-q", "-p", "no:cacheprovider", "-rA").stdout
    assert " passed" in output
    for test in (
        "test_products.py::test_an_id_past_64_bits_is_422",
        "test_products.py::test_text_with_nul_is_422",
        "test_products.py::test_blank_short_text_is_422",
        "test_reviews.py::test_text_with_nul_is_422",
        "test_reviews.py::test_an_int_past_32_bits_is_422",
    ):
        assert f"PASSED tests/{test}" in output, f"{test} was not scaffolded or did not run"
    env = {"DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'check.db'}"}
    project.uv("alembic", "upgrade", "head", env=env)
    project.uv("alembic", "check", env=env)


def test_updating_a_project_with_resources_keeps_them_without_conflicts(
    tmp_path: Path,
) -> None:
    template = snapshot_repo(tmp_path / "template", CURRENT_TAG)
    project = render(template, tmp_path / "shop", {"project_name": "Shop"}, ref=CURRENT_TAG)
    commit_project(project)
    assert add(project, *PRODUCTS).returncode == 0
    git(project, "add", "-A")
    git(project, "commit", "-q", "-m", "products")
    main = template / "template" / "src" / "{{package_name}}" / "main.py.jinja"
    main.write_text(main.read_text() + "\n# A change of the next template version.\n")
    commit_and_tag(template, NEXT_TAG, "next template version")

    copier_update(project)
    assert "A change of the next template version." in (project / "src/shop/main.py").read_text()
    assert "products_router" in (project / "src/shop/domains.py").read_text()
    assert (project / "src/shop/products/service.py").is_file()
    status = git(project, "status", "--porcelain")
    assert "domains.py" not in status, "the project's registry must not be touched"
    assert yaml.safe_load((project / ".copier-answers.yml").read_text())["_commit"] == NEXT_TAG
    for path in project.rglob("*"):
        if path.is_file() and ".git" not in path.parts:
            assert "<<<<<<<" not in path.read_text(errors="replace"), path
