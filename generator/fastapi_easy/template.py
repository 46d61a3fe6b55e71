"""Where the Copier template lives and what its questions are.

The CLI reads the choices from ``copier.yml`` itself, so its flags can never drift from
the template's questions.
"""

import os
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from . import __version__

# Where `copier update` fetches newer template versions from. A project made from the
# bundled copy records this URL and the tag of the installed version in its answers file.
DEFAULT_TEMPLATE_URL = "https://github.com/fastapi-easy/fastapi-easy.git"
TEMPLATE_URL_ENV = "FASTAPI_EASY_TEMPLATE_URL"


def version_tag(version: str = __version__) -> str:
    return f"v{version}"


def template_url(override: str | None = None) -> str:
    return override or os.environ.get(TEMPLATE_URL_ENV) or DEFAULT_TEMPLATE_URL


def bundled_template() -> Path:
    """The template shipped with this package: inside the wheel, or the checkout in development."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "_template", here.parent.parent):
        if (candidate / "copier.yml").is_file() and (candidate / "template").is_dir():
            return candidate
    raise FileNotFoundError(f"no bundled template next to {here}")


@cache
def questions() -> dict[str, dict[str, Any]]:
    data = yaml.safe_load((bundled_template() / "copier.yml").read_text(encoding="utf-8"))
    return {key: value for key, value in data.items() if not key.startswith("_")}


def choices(question: str) -> list[str]:
    raw = questions()[question]["choices"]
    return [str(v) for v in (raw.values() if isinstance(raw, dict) else raw)]
