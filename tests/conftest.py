from collections.abc import Iterator
from pathlib import Path

import pytest

from fastapi_easy import __version__
from fastapi_easy.template import version_tag

from .project import snapshot_repo
from .servers import PostgresServer, RedisServer, postgres_server, redis_server

CURRENT_TAG = version_tag(__version__)


@pytest.fixture(scope="session")
def template_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The working tree as a git repo tagged with the current version."""
    return snapshot_repo(tmp_path_factory.mktemp("template"), CURRENT_TAG)


@pytest.fixture(scope="session")
def redis() -> Iterator[RedisServer]:
    with redis_server() as server:
        yield server


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    with postgres_server() as server:
        yield server
