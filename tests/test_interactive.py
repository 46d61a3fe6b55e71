"""`fastapi-easy new` on a terminal asks Copier's questions; the answers given there win."""

import sys
from pathlib import Path

import pexpect
import pytest
import yaml

from .project import clean_env, tool

DOWN = "\x1b[B"
ENTER = "\r"
SPACE = " "
CLEAR_LINE = "\x15"  # Ctrl-U: the prompt is pre-filled with the default


@pytest.mark.skipif(sys.platform == "win32", reason="needs a pseudo-terminal")
def test_prompts_on_a_terminal(tmp_path: Path) -> None:
    child = pexpect.spawn(
        tool("fastapi-easy"),
        ["new", "shop"],
        cwd=str(tmp_path),
        env={**clean_env(), "TERM": "xterm", "COLUMNS": "120", "LINES": "40"},
        encoding="utf-8",
        timeout=60,
        dimensions=(40, 120),
    )

    def answer(question: str, keys: str) -> None:
        child.expect(question)
        child.send(keys)

    answer("Human-readable project name", ENTER)  # default: the folder name
    answer("Distribution and command name", ENTER)
    answer("Python import package name", ENTER)
    answer("One-line description", CLEAR_LINE + "Sells shoes" + ENTER)
    answer("Author name", ENTER)
    answer("Author e-mail", ENTER)
    answer("Minimum Python version", ENTER)
    answer("Database", DOWN + ENTER)  # PostgreSQL
    answer("Second-level cache", DOWN + ENTER)  # Redis
    answer("Optional features", DOWN + DOWN + SPACE + ENTER)  # also tick the third one
    answer("Include the example blog", "n")  # a confirm: "n" answers no at once
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0, child.before

    answers = yaml.safe_load((tmp_path / "shop" / ".copier-answers.yml").read_text())
    assert answers["project_name"] == "shop"
    assert answers["description"] == "Sells shoes"
    assert answers["database"] == "postgresql"
    assert answers["cache"] == "redis"
    assert answers["features"] == ["metrics", "alerts", "rate_limit"]
    assert answers["examples"] is False
    assert (tmp_path / "shop" / "src" / "shop" / "core" / "redis.py").is_file()
    assert not (tmp_path / "shop" / "src" / "shop" / "posts").exists()
