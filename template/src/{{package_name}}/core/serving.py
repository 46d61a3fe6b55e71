"""Serve the application with the server named by ``SERVER``: uvicorn, granian or gunicorn.

Whichever runs it, the service behaves the same, from the settings:

- ``WORKERS`` processes, each building its own app with ``create_app`` (so each has its
  own pools), listening on ``HOST``:``PORT`` with ``BACKLOG`` connections waiting to be
  accepted;
- idle keep-alive connections closed after ``KEEP_ALIVE_SECONDS`` (granian keeps its own
  idle policy: it has no such setting);
- no access log from the server: the application logs a sample (``core/http.py``), where a
  line per request would cost a large share of the throughput;
- HTTP/1.1: uvicorn and gunicorn's worker speak nothing else, and granian, which would also
  speak cleartext HTTP/2, keeps state per connection for it, a worker's memory that grows
  with every open connection (``bench/README.md``); TLS and HTTP/2 belong to the proxy;
- ``X-Forwarded-For`` and ``X-Forwarded-Proto`` applied from the peers in
  ``FORWARDED_ALLOW_IPS`` only, so that behind a proxy the client address the rate limiter
  and the access log see is the client's, not the proxy's;
- on SIGTERM: stop accepting, give the requests in flight up to
  ``SHUTDOWN_TIMEOUT_SECONDS``, then run the lifespan's shutdown (the pools are closed) and
  exit. An orchestrator's grace period must cover that time plus its own pre-stop delay.

granian is the default: on this app it served the most requests per second and still
answered every request at 1,000 connections (``bench/compare_servers.py``, figures in
``bench/README.md``). uvicorn (uvloop, httptools) is a dependency too: ``SERVER=uvicorn``,
and ``uvicorn --reload`` in development. gunicorn with the maintained uvicorn worker comes
with the ``servers`` extra (``uv sync --extra servers``).
"""

import asyncio
import importlib.util
import os
import subprocess
import sys
from collections.abc import Callable
from typing import Any, ClassVar

import uvicorn
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from ..settings import Settings
from .db import ConnectionBudgetError, check_connection_budget, create_engine

PACKAGE = __package__.partition(".")[0]
APP = f"{PACKAGE}.main:create_app"
PROXIED_APP = f"{PACKAGE}.core.serving:create_proxied_app"


def serve(settings: Settings) -> None:
    """Check that the server is installed and the connection budget fits, then run the
    server the settings name until it is told to stop."""
    run, modules = SERVERS[settings.server]
    if missing := [module for module in modules if importlib.util.find_spec(module) is None]:
        raise SystemExit(
            f"SERVER={settings.server} needs {', '.join(missing)}, which this environment "
            "lacks: install the project's servers extra (uv sync --extra servers)"
        )
    try:
        asyncio.run(_check_connection_budget(settings))
    except ConnectionBudgetError as error:
        raise SystemExit(f"refusing to start: {error}") from None
    if settings.migrate_on_start:
        _migrate_before_the_workers()
    run(settings)


async def _check_connection_budget(settings: Settings) -> None:
    """The budget check of the lifespan, once before any worker starts.

    Each worker checks again as it starts (that covers servers started without this
    command), but a worker that fails there only ends itself: with several workers, the
    supervisor of uvicorn or gunicorn carries on or exits with status 0. Checked here, a
    budget that does not fit stops the command with the numbers and a non-zero status.
    """
    engine = create_engine(settings)
    try:
        await check_connection_budget(engine, settings)
    finally:
        await engine.dispose()


def _migrate_before_the_workers() -> None:
    """Apply the migrations once, in a process of their own, and turn them off for the
    workers: several workers never race to migrate, and none of them loads Alembic (with
    Mako and Pygments, a sizeable share of a worker's memory). Not in this process, which
    the servers fork their workers from: what it imports, every worker would hold."""
    migrate = subprocess.run([sys.executable, "-m", f"{PACKAGE}.core.migrate"], check=False)
    if migrate.returncode != 0:
        raise SystemExit("refusing to start: the migrations failed (output above)")
    os.environ["MIGRATE_ON_START"] = "false"


def serve_uvicorn(settings: Settings) -> None:
    uvicorn.run(
        APP,
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        backlog=settings.backlog,
        timeout_keep_alive=settings.keep_alive_seconds,
        timeout_graceful_shutdown=settings.shutdown_timeout_seconds,
        # With several workers the supervisor pings each and replaces one that does not
        # answer in time. At uvicorn's 5 s, workers still importing the app on a busy or
        # CPU-throttled machine were killed, and their replacements too, over and over.
        timeout_worker_healthcheck=30,
        log_level=settings.log_level,
        access_log=False,
        loop="uvloop",
        http="httptools",
        proxy_headers=True,
        forwarded_allow_ips=settings.forwarded_allow_ips,
    )


def create_proxied_app() -> ProxyHeadersMiddleware:
    """The app as granian serves it, in each worker.

    granian passes ``X-Forwarded-*`` headers through without applying them, so the client
    would be the proxy; this wraps the app in the middleware uvicorn applies itself, with
    the same trusted peers, so the client is the same under every server. (granian's own
    ``granian.utils.proxies`` wrapper differs in details, such as a port in a forwarded
    address.) The app is imported here, in the worker, as gunicorn's ``load`` below does.
    """
    from ..main import create_app

    settings = Settings()
    return ProxyHeadersMiddleware(create_app(settings), trusted_hosts=settings.forwarded_allow_ips)


def serve_granian(settings: Settings) -> None:
    from granian import Granian
    from granian.constants import HTTPModes, Interfaces, Loops
    from granian.log import LogLevels

    Granian(
        PROXIED_APP,
        factory=True,
        interface=Interfaces.ASGI,
        address=settings.host,
        port=settings.port,
        workers=settings.workers,
        backlog=settings.backlog,
        loop=Loops.uvloop,
        http=HTTPModes.http1,
        log_level=LogLevels(settings.log_level),
        log_access=False,
        # Workers still busy this long after SIGTERM are killed.
        workers_kill_timeout=settings.shutdown_timeout_seconds,
    ).serve()


def serve_gunicorn(settings: Settings) -> None:
    """gunicorn's arbiter forking ``uvicorn-worker`` processes, each a uvicorn server."""
    from gunicorn.app.base import BaseApplication
    from uvicorn_worker import UvicornWorker

    class Worker(UvicornWorker):
        CONFIG_KWARGS: ClassVar[dict[str, Any]] = {
            "loop": "uvloop",
            "http": "httptools",
            "access_log": False,
            # The worker's own deadline, so that it closes the pools before the arbiter's
            # graceful_timeout below kills it.
            "timeout_graceful_shutdown": settings.shutdown_timeout_seconds,
        }

    options: dict[str, Any] = {
        "bind": [f"{settings.host}:{settings.port}"],
        "workers": settings.workers,
        "worker_class": Worker,
        "backlog": settings.backlog,
        "keepalive": settings.keep_alive_seconds,
        "graceful_timeout": settings.shutdown_timeout_seconds + 5,
        "loglevel": settings.log_level,
        "accesslog": None,
        # Read by the uvicorn worker, which applies X-Forwarded-* from these peers.
        "forwarded_allow_ips": settings.forwarded_allow_ips,
    }

    class Application(BaseApplication):
        def load_config(self) -> None:
            for name, value in options.items():
                self.cfg.set(name, value)

        def load(self) -> Any:
            # Called in each worker after the fork: every worker builds its own app.
            from ..main import create_app

            return create_app()

    Application().run()


# Each server: how to run it, and the modules it needs (gunicorn's: the servers extra).
SERVERS: dict[str, tuple[Callable[[Settings], None], tuple[str, ...]]] = {
    "uvicorn": (serve_uvicorn, ("uvicorn",)),
    "granian": (serve_granian, ("granian",)),
    "gunicorn": (serve_gunicorn, ("gunicorn", "uvicorn_worker")),
}
