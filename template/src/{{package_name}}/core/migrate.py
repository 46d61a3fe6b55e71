"""Apply the Alembic migrations when the service starts (``MIGRATE_ON_START``).

Convenient for the embedded SQLite default, where the service is the only client. The
serve command runs ``python -m`` this module once, before its workers start, and the
workers skip it; an app started another way (``uvicorn --factory``) migrates in its
lifespan. With several instances, run ``alembic upgrade head`` once as a deploy step
instead: concurrent upgrades would race each other.
"""

from importlib.resources import files

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection
from sqlalchemy.ext.asyncio import AsyncEngine


def alembic_config() -> Config:
    """The migrations ship inside the package, so this works from an installed wheel too."""
    package = __package__.rpartition(".")[0]
    config = Config()
    config.set_main_option("script_location", str(files(package) / "migrations"))
    return config


def _upgrade(connection: Connection, revision: str) -> None:
    config = alembic_config()
    config.attributes["connection"] = connection
    command.upgrade(config, revision)


async def upgrade_database(engine: AsyncEngine, revision: str = "head") -> None:
    async with engine.connect() as connection:
        await connection.run_sync(_upgrade, revision)
        await connection.commit()


def main() -> None:
    """Upgrade the database of the settings to the latest revision."""
    command.upgrade(alembic_config(), "head")


if __name__ == "__main__":
    main()
