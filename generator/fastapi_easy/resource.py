"""`fastapi-easy add resource`: a new domain folder with the example domains' properties.

A resource gets a model (indexes per filter in keyset order), schemas, a service (Core
reads, one statement per page, cached with declared tags; writes that declare what they
change), a router, an Alembic migration and tests, and is registered in the project's own
``domains.py``, which template updates never rewrite. Everything is rendered and checked
in memory first: bad input writes nothing.

Why by hand: Copier renders whole projects from answers; it has no notion of adding a
repeated unit to a project that already exists, so the files come from Jinja templates
shipped beside this module.
"""

import keyword
import re
import secrets
import subprocess
import sys
import textwrap
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jinja2
import yaml

ANSWERS_FILE = ".copier-answers.yml"
SCAFFOLD = Path(__file__).resolve().parent / "scaffold"
NAME = re.compile(r"^[a-z][a-z0-9]*(_[a-z0-9]+)*$")
# Folders and modules a generated project already has, and words that make poor tables.
RESERVED = frozenset(
    {"api", "auth", "comments", "core", "domains", "health", "main", "metrics", "migrations"}
    | {"models", "posts", "seed", "settings", "tests", "users", "user", "order", "group"}
    | {"select", "table", "index", "schema", "test", "app", "src"}
)
RESERVED_FIELDS = frozenset({"id", "created_at", "model_config", "model_fields", "cursor"})
RESERVED_FIELDS |= {"limit", "json", "dict", "copy", "schema", "validate", "construct"}


class ResourceError(Exception):
    """Bad input: one line for the user, nothing written."""


@dataclass(frozen=True)
class Kind:
    """How one field type is stored, validated and sampled in the generated tests."""

    sa_type: str  # the model's column type
    migration: str  # the same type as the migration writes it
    python: str  # the type in the read schema
    input: str  # the type in the create schema
    sample_json: str  # an expression in ``n``: a valid value as JSON sends it
    sample_python: str  # the same value as Python (for inserting rows directly)
    unique_python: str  # a value unique per ``(n, i)``
    indexable: bool = True
    uniqueable: bool = True


# The input types of the kinds with limits, defined once in the scaffolded schemas.py. They
# state every limit the column has (the project's ``core/fields.py`` says why): text without
# U+0000, which PostgreSQL cannot store, short text not blank either, and integers within
# the 32 bits of an INTEGER column. A value past a limit is a 422, not a database error.
TYPE_ALIASES = {
    "str": (
        "ShortText",
        "Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200, "
        "pattern=NOT_BLANK)]",
    ),
    "text": (
        "LongText",
        "Annotated[str, StringConstraints(min_length=1, max_length=100_000, pattern=NO_NUL)]",
    ),
    "int": ("Int32", "Annotated[int, Field(ge=-(2**31), le=2**31 - 1)]"),
}
KINDS: dict[str, Kind] = {
    "str": Kind("String(200)", "sa.String(length=200)", "str", "ShortText", 'f"{NAME}-{n}"',
                'f"{NAME}-{n}"', 'f"{NAME}-{n}-{i}"'),
    "text": Kind("Text", "sa.Text()", "str", "LongText", 'f"Text {n}."', 'f"Text {n}."',
                 'f"Text {n}-{i}."', False, False),
    "int": Kind("Integer", "sa.Integer()", "int", "Int32", "n", "n", "n * 100_000 + i"),
    "float": Kind("Float", "sa.Float()", "float", "float", "n + 0.5", "n + 0.5",
                  "n * 100_000 + i + 0.5"),
    "decimal": Kind("Numeric(12, 2)", "sa.Numeric(precision=12, scale=2)", "Decimal",
                    "Annotated[Decimal, Field(max_digits=12, decimal_places=2)]",
                    'f"{n}.25"', 'Decimal(f"{n}.25")', 'Decimal(f"{n * 100_000 + i}.25")'),
    "bool": Kind("Boolean", "sa.Boolean()", "bool", "bool", "n % 2 == 1", "n % 2 == 1", "",
                 True, False),
    "date": Kind("Date", "sa.Date()", "date", "date",
                 "(date(2026, 1, 1) + timedelta(days=n)).isoformat()",
                 "date(2026, 1, 1) + timedelta(days=n)",
                 "date(2000, 1, 1) + timedelta(days=n * 10_000 + i)"),
    "datetime": Kind("UtcDateTime", "sa.DateTime(timezone=True)", "datetime", "AwareDatetime",
                     "(datetime(2026, 1, 1, tzinfo=UTC) + timedelta(hours=n)).isoformat()",
                     "datetime(2026, 1, 1, tzinfo=UTC) + timedelta(hours=n)",
                     "datetime(2000, 1, 1, tzinfo=UTC) + timedelta(seconds=n * 100_000 + i)"),
    "uuid": Kind("Uuid", "sa.Uuid()", "UUID", "UUID", "str(UUID(int=n + 1))", "UUID(int=n + 1)",
                 "UUID(int=n * 100_000 + i + 1)"),
    "json": Kind("JSON", "sa.JSON()", "dict[str, Any]", "dict[str, Any]", '{"n": n}',
                 '{"n": n}', "", False, False),
}  # fmt: skip
MODIFIERS = ("index", "unique", "optional")
# The same limits for list filters, as ``Query`` arguments.
FILTER_BOUNDS = {
    "str": "min_length=1, max_length=200, pattern=NOT_BLANK, ",
    "int": "ge=-(2**31), le=2**31 - 1, ",
}
# The names of the project's ``core/fields.py`` each kind's input type uses.
FIELD_NAMES = {"ref": "Id", "str": "NOT_BLANK", "text": "NO_NUL"}


@dataclass
class Field:
    name: str
    kind: str  # a key of KINDS, or "ref"
    ref: str | None = None  # the referenced table
    index: bool = False
    unique: bool = False
    optional: bool = False
    # Filled in for references:
    ref_cls: str = ""
    ref_singular: str = ""
    ref_tag: str = ""
    ref_has_name: bool = False
    alias_needed: bool = False  # the same table is referenced by two fields

    @property
    def spec(self) -> Kind:
        return KINDS["int" if self.kind == "ref" else self.kind]

    @property
    def filter(self) -> bool:
        return self.index or self.kind == "ref"

    @property
    def alias(self) -> str:
        return f"{self.name.removesuffix('_id')}_{self.ref}" if self.alias_needed else str(self.ref)

    @property
    def label(self) -> str:
        return f"{self.name.removesuffix('_id')}_name"

    @property
    def on_delete(self) -> str:
        return "SET NULL" if self.optional else "CASCADE"

    @property
    def on_delete_note(self) -> str:
        if self.optional:
            return f"ON DELETE SET NULL: deleting the {self.ref_singular} unlinks it from these."
        return f"ON DELETE CASCADE: deleting the {self.ref_singular} deletes its rows here."

    @property
    def mapped(self) -> str:
        python = "int" if self.kind == "ref" else self.spec.python
        return f"{python} | None" if self.optional else python

    @property
    def column_args(self) -> str:
        if self.kind == "ref":
            args = [f'ForeignKey("{self.ref}.id", ondelete="{self.on_delete}")']
        else:
            args = [self.spec.sa_type]
        if self.unique:
            args.append("unique=True")
        return ", ".join(args)

    @property
    def input_annotation(self) -> str:
        kind = "Id" if self.kind == "ref" else self.spec.input
        return f"{kind} | None = None" if self.optional else kind

    @property
    def output_annotation(self) -> str:
        return self.mapped

    @property
    def filter_annotation(self) -> str:
        return "Id" if self.kind == "ref" else self.spec.python

    @property
    def filter_bounds(self) -> str:
        """The create schema's limits as ``Query`` arguments (each followed by ", "), so a
        filter value no row can hold is a 422, not a database error."""
        return FILTER_BOUNDS.get(self.kind, "")

    @property
    def migration_type(self) -> str:
        return "BigIntId" if self.kind == "ref" else self.spec.migration

    def _sample(self, expression: str) -> str:
        return expression.replace("{NAME}", self.name)

    @property
    def sample_json(self) -> str:
        return self._sample(self.spec.sample_json)

    @property
    def sample_python(self) -> str:
        return self._sample(self.spec.sample_python)

    @property
    def unique_python(self) -> str:
        return self._sample(self.spec.unique_python)


@dataclass
class Resource:
    table: str
    fields: list[Field]
    command: str
    cls: str = ""
    singular: str = ""
    # Test helpers that create the referenced rows: (table, code).
    ref_makers: list[tuple[str, str]] = field(default_factory=list)

    @property
    def url(self) -> str:
        return self.table.replace("_", "-")

    @property
    def title(self) -> str:
        return self.table.replace("_", " ").capitalize()

    @property
    def refs(self) -> list[Field]:
        return [f for f in self.fields if f.kind == "ref"]

    @property
    def named_refs(self) -> list[Field]:
        return [f for f in self.refs if f.ref_has_name]

    @property
    def texts(self) -> list[Field]:
        return [f for f in self.fields if f.kind in {"str", "text"}]

    def of_kind(self, kind: str) -> list[Field]:
        return [f for f in self.fields if f.kind == kind]

    @property
    def filters(self) -> list[Field]:
        return [f for f in self.fields if f.filter]

    @property
    def uniques(self) -> list[Field]:
        return [f for f in self.fields if f.unique]

    @property
    def ref_names(self) -> str:
        return " or ".join(f.name for f in self.refs)

    @property
    def unique_names(self) -> str:
        return " or ".join(f.name for f in self.uniques)

    def kinds(self) -> set[str]:
        return {f.kind for f in self.fields}

    @property
    def model_imports(self) -> list[str]:
        names = {"Index"} | {f.spec.sa_type.split("(")[0] for f in self.fields if f.kind != "ref"}
        names.discard("UtcDateTime")
        if self.refs:
            names.add("ForeignKey")
        lines = []
        if "date" in self.kinds():
            lines.append("from datetime import date")
        if "decimal" in self.kinds():
            lines.append("from decimal import Decimal")
        if "json" in self.kinds():
            lines.append("from typing import Any")
        if "uuid" in self.kinds():
            lines.append("from uuid import UUID")
        lines.append("")
        lines.append(f"from sqlalchemy import {', '.join(sorted(names))}")
        return lines

    @property
    def schema_imports(self) -> list[str]:
        kinds = self.kinds()
        lines = [
            "from datetime import date, datetime"
            if "date" in kinds
            else "from datetime import datetime"
        ]
        if "decimal" in kinds:
            lines.append("from decimal import Decimal")
        typing = sorted({"Annotated"} if kinds & {"str", "text", "int", "decimal"} else set())
        typing += ["Any"] if "json" in kinds else []
        if typing:
            lines.append(f"from typing import {', '.join(sorted(typing))}")
        if "uuid" in kinds:
            lines.append("from uuid import UUID")
        lines.append("")
        pydantic = {"BaseModel", "ConfigDict", "Field"}
        if kinds & {"str", "text"}:
            pydantic.add("StringConstraints")
        if "datetime" in kinds:
            pydantic.add("AwareDatetime")
        lines.append(f"from pydantic import {', '.join(sorted(pydantic))}")
        if fields := _fields_import(kinds):
            lines += ["", fields]
        return lines

    @property
    def type_aliases(self) -> list[str]:
        kinds = self.kinds()
        aliases = (alias for kind, alias in TYPE_ALIASES.items() if kind in kinds)
        return [f"{name} = {value}" for name, value in aliases]

    @property
    def service_imports(self) -> list[str]:
        lines = set()
        for f in self.refs:
            lines.add(f"from ..{f.ref}.models import {f.ref_cls}, {f.ref_tag}")
        return sorted(lines)

    @property
    def router_imports(self) -> list[str]:
        kinds = {f.kind for f in self.filters}
        lines = []
        if "date" in kinds:
            lines.append("from datetime import date")
        if "decimal" in kinds:
            lines.append("from decimal import Decimal")
        lines.append("from typing import Annotated")
        if "uuid" in kinds:
            lines.append("from uuid import UUID")
        return lines

    @property
    def router_fields_import(self) -> str:
        """Path ids are `Id`, and the filters' types may use more of ``core/fields.py``."""
        return _fields_import({"ref"} | {f.kind for f in self.filters})

    @property
    def test_imports(self) -> list[str]:
        kinds = self.kinds()
        lines = [
            "from datetime import UTC, date, datetime, timedelta"
            if "date" in kinds
            else "from datetime import UTC, datetime, timedelta"
        ]
        if "decimal" in kinds:
            lines.append("from decimal import Decimal")
        lines.append("from typing import Any")
        uuids = ["UUID"] if "uuid" in kinds else []
        uuids += ["uuid4"] if self.ref_makers else []
        if uuids:
            lines.append(f"from uuid import {', '.join(uuids)}")
        return lines


def _fields_import(kinds: set[str]) -> str:
    """The import of what ``kinds`` use from the project's ``core/fields.py``, if anything."""
    names = sorted(FIELD_NAMES[kind] for kind in kinds & FIELD_NAMES.keys())
    return f"from ..core.fields import {', '.join(names)}" if names else ""


# Referenced rows the generated tests create, for the example domains. A scaffolded
# resource's maker is built from the command recorded in its package docstring.
EXAMPLE_MAKERS = {
    "users": """async def make_users(client: httpx.AsyncClient) -> int:
    email = f"{uuid4().hex}@example.com"
    response = await client.post("/api/users", json={"email": email, "name": "Referenced"})
    assert response.status_code == 201, response.text
    return int(response.json()["id"])""",
    "posts": """async def make_posts(client: httpx.AsyncClient) -> int:
    email = f"{uuid4().hex}@example.com"
    user = await client.post("/api/users", json={"email": email, "name": "Author"})
    post = {"author_id": user.json()["id"], "title": "Referenced", "body": "Text."}
    response = await client.post("/api/posts", json=post)
    assert response.status_code == 201, response.text
    return int(response.json()["id"])""",
}
EXAMPLE_CLASSES = {"users": ("User", "user"), "posts": ("Post", "post")}


def singular_of(table: str) -> str:
    if table.endswith("ies"):
        return table[:-3] + "y"
    if table.endswith(("ses", "xes", "ches", "shes")):
        return table[:-2]
    if table.endswith("s") and not table.endswith("ss"):
        return table[:-1]
    return table


def class_of(singular: str) -> str:
    return "".join(part.capitalize() for part in singular.split("_"))


@dataclass
class Project:
    root: Path
    package: str
    answers: dict[str, Any]

    @property
    def src(self) -> Path:
        return self.root / "src" / self.package

    @classmethod
    def find(cls, start: Path) -> "Project":
        for folder in (start, *start.parents):
            answers_file = folder / ANSWERS_FILE
            if answers_file.is_file():
                answers = yaml.safe_load(answers_file.read_text(encoding="utf-8")) or {}
                package = answers.get("package_name")
                # A scaffolded resource registers in domains.py, imports core/fields.py and
                # reads through `Database.reads` (core/db.py): what each file must hold.
                needed = {
                    f"src/{package}/domains.py": "",
                    f"src/{package}/core/fields.py": "",
                    f"src/{package}/core/db.py": "    reads: AsyncEngine",
                }
                missing = [
                    f"{path} with `{marker.strip()}`" if marker else path
                    for path, marker in needed.items()
                    if not (folder / path).is_file()
                    or marker not in (folder / path).read_text(encoding="utf-8")
                ]
                if package and not missing:
                    return cls(folder, package, answers)
                raise ResourceError(
                    f"{folder} was generated by an older fastapi-easy (no "
                    f"{missing[0]}); run `fastapi-easy update` first"
                )
        raise ResourceError(f"{start} is not inside a generated project (no {ANSWERS_FILE})")


def parse_field(text: str, project: Project, table: str) -> Field:
    parts = text.split(":")
    if len(parts) < 2:
        raise ResourceError(f"field {text!r}: write NAME:TYPE[:MODIFIER...], e.g. price:decimal")
    name, kind, *rest = parts
    if not NAME.match(name) or keyword.iskeyword(name) or name in RESERVED_FIELDS:
        raise ResourceError(f"field {text!r}: {name!r} is not a usable field name")
    if name == f"{singular_of(table)}_id":
        raise ResourceError(f"field {text!r}: {name!r} names the {table} row itself (its id)")
    ref = None
    if kind == "ref":
        if not rest:
            raise ResourceError(f"field {text!r}: write {name}:ref:OTHER (the other resource)")
        ref, *rest = rest
        if ref == table:
            raise ResourceError(f"field {text!r}: a resource cannot reference itself yet")
    elif kind not in KINDS:
        raise ResourceError(
            f"field {text!r}: unknown type {kind!r} (one of {', '.join(KINDS)}, ref)"
        )
    unknown = [m for m in rest if m not in MODIFIERS]
    if unknown:
        raise ResourceError(
            f"field {text!r}: unknown modifier {unknown[0]!r} (one of {', '.join(MODIFIERS)})"
        )
    item = Field(name, kind, ref, "index" in rest, "unique" in rest, "optional" in rest)
    if item.index and not item.spec.indexable:
        raise ResourceError(f"field {text!r}: {kind} cannot be indexed (use str for short text)")
    if item.unique and not item.spec.uniqueable:
        raise ResourceError(f"field {text!r}: {kind} cannot be unique")
    if item.kind == "ref":
        _resolve_ref(item, project, text)
    return item


def _resolve_ref(item: Field, project: Project, text: str) -> None:
    ref = str(item.ref)
    models = project.src / ref / "models.py"
    if not models.is_file():
        raise ResourceError(f"field {text!r}: there is no resource {ref!r} in this project")
    source = models.read_text(encoding="utf-8")
    cls, singular = EXAMPLE_CLASSES.get(ref, (class_of(singular_of(ref)), singular_of(ref)))
    if f"def {singular}_tag(" not in source or f"class {cls}(" not in source:
        raise ResourceError(
            f"field {text!r}: {ref} has no cache tag for its rows ({ref}.models.{singular}_tag)"
        )
    item.ref_cls, item.ref_singular, item.ref_tag = cls, singular, f"{singular}_tag"
    item.ref_has_name = re.search(r"^\s+name: Mapped\[str\]", source, re.MULTILINE) is not None


def _maker(ref: str, project: Project, seen: set[str]) -> list[tuple[str, str]]:
    """Test helpers that create a row of ``ref`` (and of what it references, first)."""
    if ref in EXAMPLE_MAKERS:
        return [(ref, EXAMPLE_MAKERS[ref])]
    if ref in seen:
        return []
    seen.add(ref)
    init = (project.src / ref / "__init__.py").read_text(encoding="utf-8")
    match = re.search(r"`fastapi-easy add resource ([^`]+)`", init)
    if match is None:
        raise ResourceError(f"{ref} was not scaffolded by fastapi-easy: cannot make test rows")
    table, *specs = match[1].split()
    other = Resource(table, [parse_field(s, project, table) for s in specs], match[1])
    makers: list[tuple[str, str]] = []
    for f in other.refs:
        makers += _maker(str(f.ref), project, seen)
    values = ", ".join(
        f'"{f.name}": await make_{f.ref}(client)'
        if f.kind == "ref"
        else f'"{f.name}": {f.sample_json}'
        for f in other.fields
    )
    code = (
        f"async def make_{ref}(client: httpx.AsyncClient) -> int:\n"
        f"    n = int(uuid4().int % 1_000_000)\n"
        f'    response = await client.post("/api/{ref.replace("_", "-")}", json={{{values}}})\n'
        f"    assert response.status_code == 201, response.text\n"
        f'    return int(response.json()["id"])'
    )
    return [*makers, (ref, code)]


def build(project: Project, table: str, specs: list[str]) -> Resource:
    if not NAME.match(table) or keyword.iskeyword(table):
        raise ResourceError(
            f"{table!r} is not a resource name: use lowercase snake_case, e.g. products"
        )
    if table in RESERVED or singular_of(table) in RESERVED:
        raise ResourceError(f"{table!r} is reserved in a generated project; pick another name")
    if (project.src / table).exists():
        raise ResourceError(f"src/{project.package}/{table} exists already")
    if not specs:
        raise ResourceError("give at least one field, e.g. name:str")
    fields = [parse_field(spec, project, table) for spec in specs]
    names = [f.name for f in fields]
    if len(set(names)) != len(names):
        raise ResourceError(f"a field is named twice: {', '.join(names)}")
    refs = [f.ref for f in fields if f.kind == "ref"]
    for f in fields:
        f.alias_needed = refs.count(f.ref) > 1
    resource = Resource(table, fields, " ".join([table, *specs]))
    resource.singular = singular_of(table)
    resource.cls = class_of(resource.singular)
    if resource.singular == table:
        raise ResourceError(f"name the resource in the plural ({table}s), as its table")
    if resource.cls in {name for name, _ in TYPE_ALIASES.values()}:
        raise ResourceError(f"{table!r} would shadow a type of its schemas; pick another name")
    makers: list[tuple[str, str]] = []
    seen: set[str] = set()
    for f in resource.refs:
        for maker in _maker(str(f.ref), project, seen):
            if maker not in makers:
                makers.append(maker)
    resource.ref_makers = makers
    return resource


def _head_revision(versions: Path) -> str | None:
    revisions: dict[str, str | None] = {}
    for path in versions.glob("*.py"):
        text = path.read_text(encoding="utf-8")
        revision = re.search(r'^revision: str = "([^"]+)"', text, re.MULTILINE)
        down = re.search(r"^down_revision: [^=]+= (.+)$", text, re.MULTILINE)
        if revision:
            revisions[revision[1]] = down[1].strip().strip('"') if down else None
    heads = set(revisions) - set(revisions.values())
    if len(heads) > 1:
        raise ResourceError(
            f"the migrations have several heads ({', '.join(sorted(heads))}): merge them first"
        )
    return next(iter(heads), None)


def render(project: Project, resource: Resource) -> dict[Path, str]:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(SCAFFOLD),
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        undefined=jinja2.StrictUndefined,
    )
    now = datetime.now(UTC)
    revision = secrets.token_hex(6)
    context = {
        "r": resource,
        "package": project.package,
        "revision": revision,
        "down_revision": _head_revision(project.src / "migrations" / "versions"),
        "created": now.strftime("%Y-%m-%d %H:%M:%S"),
    }
    folder = project.src / resource.table
    docstring = f"{resource.title}: scaffolded by `fastapi-easy add resource {resource.command}`."
    files = {
        folder / "__init__.py": '"""' + textwrap.fill(docstring, 96) + '"""\n',
        folder / "models.py": env.get_template("models.py.jinja").render(context),
        folder / "schemas.py": env.get_template("schemas.py.jinja").render(context),
        folder / "service.py": env.get_template("service.py.jinja").render(context),
        folder / "router.py": env.get_template("router.py.jinja").render(context),
        project.src / "migrations" / "versions" / f"{now:%Y%m%d}_{revision}_{resource.table}.py": (
            env.get_template("migration.py.jinja").render(context)
        ),
        project.root / "tests" / f"test_{resource.table}.py": (
            env.get_template("test.py.jinja").render(context)
        ),
    }
    domains = project.src / "domains.py"
    files[domains] = register(domains.read_text(encoding="utf-8"), resource.table)
    return files


def register(source: str, table: str) -> str:
    """Add ``table``'s router to the project's ``domains.py``: an import and a list entry."""
    marker = "ROUTERS: list[APIRouter] = ["
    if marker not in source:
        raise ResourceError(f"domains.py has no `{marker}` list to register {table} in")
    head, _, tail = source.partition(marker)
    head = head.rstrip("\n") + f"\nfrom .{table}.router import router as {table}_router\n\n"
    items, _, rest = tail.partition("]")
    entries = [e.strip() for e in items.replace("\n", " ").split(",") if e.strip()]
    entries.append(f"{table}_router")
    body = "".join(f"    {entry},\n" for entry in entries)
    return f"{head}{marker}\n{body}]{rest}"


def write(project: Project, files: dict[Path, str]) -> list[Path]:
    for path in files:
        if path.exists() and path.name != "domains.py":
            raise ResourceError(f"{path.relative_to(project.root)} exists already")
    for path, text in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    written = sorted(files)
    _format(project, written)
    return written


def _format(project: Project, paths: list[Path]) -> None:
    """The project's own formatter and import sorter, with its settings, on the new files."""
    targets = [str(p) for p in paths]
    for args in (["check", "--fix-only", "--quiet", "--select", "I,F401"], ["format", "--quiet"]):
        subprocess.run(
            [sys.executable, "-m", "ruff", *args, *targets], cwd=project.root, check=False
        )


def add_resource(start: Path, table: str, specs: list[str]) -> list[Path]:
    project = Project.find(start.expanduser().absolute())
    resource = build(project, table, specs)
    return write(project, render(project, resource))
