"""Render, install and run generated projects.

The template is rendered from a snapshot of the working tree (uncommitted changes
included) committed to a temporary git repository and tagged with the package version, so
tests see exactly what a release would ship and `copier update` has tags to move between.
"""

import glob
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import copier

from fastapi_easy.template import choices

REPO_ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
GIT_ENV = {
    "GIT_AUTHOR_NAME": "fastapi-easy tests",
    "GIT_AUTHOR_EMAIL": "tests@example.com",
    "GIT_COMMITTER_NAME": "fastapi-easy tests",
    "GIT_COMMITTER_EMAIL": "tests@example.com",
}


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args],
        cwd=cwd,
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, **GIT_ENV},
    ).stdout


def snapshot_repo(dest: Path, tag: str) -> Path:
    """Copy the working tree's files (tracked and untracked, not ignored) into a new git repo."""
    files = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=REPO_ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split("\0")
    for rel in filter(None, files):
        source = REPO_ROOT / rel
        if source.is_file():
            target = dest / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    git(dest, "init", "-q", "-b", "main")
    commit_and_tag(dest, tag, "snapshot of the working tree")
    return dest


def commit_and_tag(repo: Path, tag: str, message: str) -> None:
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "--allow-empty", "-m", message)
    git(repo, "tag", tag)


def render(template: Path, dest: Path, answers: Mapping[str, Any], ref: str = "HEAD") -> Path:
    copier.run_copy(str(template), dest, data=dict(answers), defaults=True, vcs_ref=ref, quiet=True)
    return dest


def features_for(database: str) -> list[str]:
    """Every feature, less those the template refuses with `database` (k8s needs PostgreSQL)."""
    return [f for f in choices("features") if f != "k8s" or database == "postgresql"]


@cache
def find_python(version: str) -> str:
    """A working interpreter for `version`; pyenv shims on PATH may exist but fail to run."""
    candidates = [shutil.which(f"python{version}") or ""]
    candidates += sorted(
        glob.glob(os.path.expanduser(f"~/.pyenv/versions/{version}*/bin/python{version}"))
    )
    candidates += [f"/usr/bin/python{version}", f"/usr/local/bin/python{version}"]
    for candidate in filter(None, candidates):
        probe = subprocess.run(
            [candidate, "-c", "import sys; print(sys.version)"], capture_output=True
        )
        if probe.returncode == 0:
            return candidate
    raise FileNotFoundError(f"no working Python {version} interpreter")


def tool(name: str) -> str:
    found = BIN / name if (BIN / name).exists() else shutil.which(name)
    if not found:
        raise FileNotFoundError(name)
    return str(found)


def clean_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in {"VIRTUAL_ENV", "PYTHONPATH"}}
    env.pop("UV_PROJECT_ENVIRONMENT", None)
    return {**env, **(extra or {})}


@dataclass
class Project:
    path: Path

    def run(
        self,
        *args: str,
        env: Mapping[str, str] | None = None,
        check: bool = True,
        timeout: float = 900,
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            list(args),
            cwd=self.path,
            env=clean_env(env),
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"{' '.join(args)} exited {result.returncode} in {self.path}\n"
                f"--- stdout ---\n{result.stdout[-6000:]}\n--- stderr ---\n{result.stderr[-6000:]}"
            )
        return result

    def sync(self, python_version: str, *options: str) -> None:
        self.run(tool("uv"), "sync", "--python", find_python(python_version), *options)

    def uv(
        self,
        *args: str,
        env: Mapping[str, str] | None = None,
        check: bool = True,
        timeout: float = 900,
    ) -> subprocess.CompletedProcess[str]:
        return self.run(
            tool("uv"), "run", "--no-sync", *args, env=env, check=check, timeout=timeout
        )
