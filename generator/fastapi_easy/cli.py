"""The `fastapi-easy` command: a thin layer over Copier.

It maps flags to Copier answers one to one and adds what Copier lacks: one-line errors
that write nothing, a refusal to render into a non-empty folder, defaults taken from the
folder name, and an update path for projects rendered from the installed package.
"""

import re
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Annotated, Any, NoReturn

import copier
import typer
import yaml
from copier.errors import CopierError, DirtyLocalWarning

from . import __version__
from .resource import KINDS, MODIFIERS, ResourceError, add_resource
from .template import bundled_template, choices, template_url, version_tag

ANSWERS_FILE = ".copier-answers.yml"

# Rendering from a development checkout with uncommitted changes is expected here.
warnings.filterwarnings("ignore", category=DirtyLocalWarning)
CONFLICT_MARKER = re.compile(r"^<{7} ", re.MULTILINE)

app = typer.Typer(
    name="fastapi-easy",
    help="Generate FastAPI services that are fast from their first commit.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def fail(message: str, code: int = 1) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def check_choice(flag: str, value: str | None, question: str) -> None:
    allowed = choices(question)
    if value is not None and value not in allowed:
        fail(f"{flag} must be one of {', '.join(allowed)} (got {value!r})", code=2)


def version_callback(value: bool) -> None:
    if value:
        typer.echo(f"fastapi-easy {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=version_callback, is_eager=True, help="Show the version."
        ),
    ] = False,
) -> None:
    """Generate FastAPI services that are fast from their first commit."""


def _destination(path: Path, force: bool) -> Path:
    dest = path.expanduser().absolute()
    if not dest.parent.is_dir():
        fail(f"parent folder {dest.parent} does not exist")
    if dest.exists() and not dest.is_dir():
        fail(f"{dest} exists and is not a folder")
    if dest.is_dir() and any(dest.iterdir()) and not force:
        fail(f"{dest} is not empty (use --force to render into it anyway)")
    return dest


def _record_update_source(dest: Path, url: str) -> dict[str, Any]:
    """Point the answers file at the template's git repository and this version's tag.

    The project was rendered from the copy inside this package, which is no git
    repository, so Copier recorded a local path and no commit. With the URL and tag of the
    same template version, `copier update` can re-render the old version, diff it against
    the project and apply the newer template as usual.
    """
    answers_path = dest / ANSWERS_FILE
    answers = yaml.safe_load(answers_path.read_text(encoding="utf-8"))
    answers["_src_path"] = url
    answers["_commit"] = version_tag()
    header = "# Changes here will be overwritten by Copier; NEVER EDIT MANUALLY\n"
    body = yaml.safe_dump(answers, sort_keys=True, default_flow_style=False, allow_unicode=True)
    answers_path.write_text(header + body, encoding="utf-8")
    return answers


@app.command()
def new(
    path: Annotated[
        Path, typer.Argument(help="Folder to create; its name is the default project name.")
    ],
    name: Annotated[
        str | None, typer.Option(help="Project name [default: the folder name].")
    ] = None,
    slug: Annotated[str | None, typer.Option(help="Distribution and command name.")] = None,
    package: Annotated[str | None, typer.Option(help="Python import package name.")] = None,
    description: Annotated[str | None, typer.Option(help="One-line description.")] = None,
    author_name: Annotated[str | None, typer.Option(help="Author name.")] = None,
    author_email: Annotated[str | None, typer.Option(help="Author e-mail.")] = None,
    python_version: Annotated[
        str | None, typer.Option(help="Minimum Python: 3.11, 3.12 or 3.13 [default: this Python].")
    ] = None,
    database: Annotated[str | None, typer.Option(help="sqlite (default) or postgresql.")] = None,
    cache: Annotated[str | None, typer.Option(help="memory (default) or redis.")] = None,
    feature: Annotated[
        list[str] | None,
        typer.Option(
            "--feature",
            "-f",
            metavar="<feature>",
            help=f"Enable a feature (repeatable): {', '.join(choices('features'))}.",
        ),
    ] = None,
    no_features: Annotated[
        bool, typer.Option("--no-features", help="Enable no optional feature.")
    ] = False,
    examples: Annotated[
        bool | None,
        typer.Option(
            "--examples/--no-examples",
            help="Include the example blog (users, posts, comments) [default: included].",
        ),
    ] = None,
    defaults: Annotated[
        bool,
        typer.Option("--defaults", help="Use the default for every question not given by a flag."),
    ] = False,
    no_input: Annotated[
        bool,
        typer.Option("--no-input", help="Never prompt (implied when stdin is not a terminal)."),
    ] = False,
    force: Annotated[bool, typer.Option("--force", help="Render into a non-empty folder.")] = False,
    template: Annotated[
        str | None,
        typer.Option(
            help="Git URL `update` fetches the template from [env: FASTAPI_EASY_TEMPLATE_URL]."
        ),
    ] = None,
) -> None:
    """Create a new project in PATH."""
    check_choice("--python-version", python_version, "python_version")
    check_choice("--database", database, "database")
    check_choice("--cache", cache, "cache")
    for item in feature or []:
        check_choice("--feature", item, "features")
    if feature and no_features:
        fail("--feature and --no-features exclude each other", code=2)
    dest = _destination(path, force)

    data: dict[str, Any] = {
        key: value
        for key, value in {
            "project_name": name,
            "project_slug": slug,
            "package_name": package,
            "description": description,
            "author_name": author_name,
            "author_email": author_email,
            "python_version": python_version,
            "database": database,
            "cache": cache,
            "features": sorted(set(feature)) if feature else ([] if no_features else None),
            "examples": examples,
        }.items()
        if value is not None
    }
    # Like `cargo new`: the folder names the project unless told otherwise.
    user_defaults: dict[str, Any] = {"project_name": dest.name}
    running = f"{sys.version_info.major}.{sys.version_info.minor}"
    if running in choices("python_version"):
        user_defaults["python_version"] = running
    interactive = not (defaults or no_input) and sys.stdin.isatty()

    try:
        copier.run_copy(
            str(bundled_template()),
            dest,
            data=data,
            user_defaults=user_defaults,
            defaults=not interactive,
            overwrite=force,
            unsafe=False,
            quiet=True,
        )
    except (CopierError, ValueError) as exc:
        fail(_one_line(exc))
    except KeyboardInterrupt:
        fail("interrupted; nothing was written", code=130)
    answers = _record_update_source(dest, template_url(template))
    typer.echo(
        f"created {answers['project_name']} in {dest}\n\n"
        f"  cd {path}\n"
        f"  uv run {answers['project_slug']}   # serve on http://127.0.0.1:8000\n"
        f"  uv run pytest   # run its tests"
    )


@app.command()
def update(
    path: Annotated[Path, typer.Argument(help="The project to update.")] = Path("."),
    to: Annotated[
        str | None, typer.Option(help="Template version (git tag or ref) [default: the newest].")
    ] = None,
    defaults: Annotated[
        bool,
        typer.Option(
            "--defaults", help="Keep every previous answer; ask only new questions' defaults."
        ),
    ] = False,
    no_input: Annotated[bool, typer.Option("--no-input", help="Never prompt.")] = False,
) -> None:
    """Update a generated project to a newer template version, keeping your edits."""
    dest = path.expanduser().absolute()
    if not (dest / ANSWERS_FILE).is_file():
        fail(f"{dest} is not a generated project (no {ANSWERS_FILE})")
    _require_clean_git(dest)
    interactive = not (defaults or no_input) and sys.stdin.isatty()
    try:
        copier.run_update(
            dest,
            vcs_ref=to,
            defaults=not interactive,
            skip_answered=True,
            overwrite=True,
            conflict="inline",
            unsafe=False,
        )
    except (CopierError, ValueError) as exc:
        fail(_one_line(exc))
    except KeyboardInterrupt:
        fail("interrupted", code=130)
    except Exception as exc:  # git or network failures surface as assorted exception types
        fail(f"update failed: {_last_line(exc)}")
    conflicts = _conflicted_files(dest)
    if conflicts:
        fail(
            f"updated with conflicts in {len(conflicts)} file(s): {', '.join(conflicts)}; "
            "resolve the <<<<<<< markers, then commit"
        )
    typer.echo("updated; review with `git diff` and commit")


add_app = typer.Typer(help="Add to an existing project.", no_args_is_help=True)
app.add_typer(add_app, name="add")


@add_app.command("resource")
def add_resource_command(
    name: Annotated[str, typer.Argument(help="The resource, plural snake_case: its table.")],
    fields: Annotated[
        list[str] | None,
        typer.Argument(
            help="NAME:TYPE[:MODIFIER...]; types "
            + ", ".join([*KINDS, "ref:OTHER"])
            + "; modifiers "
            + ", ".join(MODIFIERS)
        ),
    ] = None,
    project: Annotated[
        Path, typer.Option(help="The generated project [default: the current folder].")
    ] = Path("."),
    no_input: Annotated[bool, typer.Option("--no-input", help="Never prompt for fields.")] = False,
) -> None:
    """Scaffold a resource: model, schemas, service, router, migration and tests."""
    specs = list(fields or [])
    if not specs and not no_input and sys.stdin.isatty():
        specs = _ask_fields()
    try:
        written = add_resource(project, name, specs)
    except ResourceError as exc:
        fail(str(exc))
    root = Path.cwd()
    typer.echo(f"added {name}:")
    for path in written:
        typer.echo(f"  {path.relative_to(root) if path.is_relative_to(root) else path}")
    typer.echo("then: uv run alembic upgrade head && uv run pytest")


def _ask_fields() -> list[str]:
    """Fields one at a time, in the style of Copier's prompts (questionary)."""
    import questionary

    specs: list[str] = []
    while True:
        field = questionary.text("Field name (empty to finish)").unsafe_ask().strip()
        if not field:
            return specs
        kind = questionary.select("Type", choices=[*KINDS, "ref"]).unsafe_ask()
        if kind == "ref":
            kind = "ref:" + questionary.text("Referenced resource (e.g. users)").unsafe_ask()
        modifiers = questionary.checkbox("Modifiers", choices=list(MODIFIERS)).unsafe_ask()
        specs.append(":".join([field, kind, *modifiers]))


def _require_clean_git(dest: Path) -> None:
    """Copier diffs against git; check here so the error names the fix, before any fetch."""
    inside = subprocess.run(
        ["git", "rev-parse", "--show-toplevel"], cwd=dest, capture_output=True, text=True
    )
    if inside.returncode != 0:
        fail(f"{dest} is not in a git repository; commit the project to git before updating")
    status = subprocess.run(
        ["git", "status", "--porcelain"], cwd=dest, capture_output=True, text=True, check=True
    )
    if status.stdout.strip():
        fail(f"{dest} is dirty (uncommitted changes); commit or stash them before updating")


def _conflicted_files(dest: Path) -> list[str]:
    changed = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=all", "-z"],
        cwd=dest,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    found = []
    for entry in filter(None, changed.split("\0")):
        rel = entry[3:]
        file = dest / rel
        if rel.endswith(".rej"):
            found.append(rel)
        elif file.is_file():
            try:
                text = file.read_text(encoding="utf-8")
            except UnicodeDecodeError:
                continue
            if CONFLICT_MARKER.search(text):
                found.append(rel)
    return sorted(found)


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _last_line(exc: BaseException) -> str:
    lines = [line.strip(" |") for line in str(exc).splitlines() if line.strip(" |")]
    return lines[-1] if lines else type(exc).__name__
