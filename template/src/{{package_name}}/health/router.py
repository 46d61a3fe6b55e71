"""Liveness and readiness.

``/healthz`` answers while the process can serve HTTP: restarting it would not help
anything else. ``/readyz`` runs every dependency check registered by the lifespan (the
database and every other backing service) concurrently, each with a deadline, and answers 503
naming the failing one, so a load balancer stops routing here until it recovers.
"""

import asyncio
import logging
from collections.abc import Awaitable, Callable

from fastapi import APIRouter, Request, Response, status
from pydantic import BaseModel

log = logging.getLogger(__name__)

router = APIRouter(tags=["health"])

READINESS_TIMEOUT_S = 2.0

ReadinessCheck = Callable[[], Awaitable[object]]


class Liveness(BaseModel):
    status: str


class Readiness(BaseModel):
    status: str
    checks: dict[str, str]


@router.get("/healthz")
async def healthz() -> Liveness:
    return Liveness(status="ok")


async def _run_check(name: str, check: ReadinessCheck) -> str:
    try:
        async with asyncio.timeout(READINESS_TIMEOUT_S):
            await check()
    except Exception as exc:
        log.warning("readiness check %s failed: %r", name, exc)
        return f"error: {type(exc).__name__}"
    return "ok"


@router.get("/readyz", responses={503: {"model": Readiness}})
async def readyz(request: Request, response: Response) -> Readiness:
    checks: dict[str, ReadinessCheck] = request.app.state.readiness_checks
    results = await asyncio.gather(*(_run_check(name, c) for name, c in checks.items()))
    outcome = dict(zip(checks, results, strict=True))
    ready = all(result == "ok" for result in results)
    if not ready:
        response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    return Readiness(status="ok" if ready else "unavailable", checks=outcome)
