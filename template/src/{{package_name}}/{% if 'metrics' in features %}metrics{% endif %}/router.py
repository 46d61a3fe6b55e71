"""``GET /metrics``: the Prometheus scrape endpoint.

A plain ``def``: with several workers the scrape reads every worker's files, blocking work
that belongs in the thread pool, not on the event loop. Left out of the OpenAPI schema, as
it is for Prometheus, not for API clients.
"""

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST

from ..core.metrics import render_metrics

router = APIRouter(tags=["monitoring"])


@router.get("/metrics", include_in_schema=False)
def metrics(request: Request) -> Response:
    return Response(render_metrics(request.app), media_type=CONTENT_TYPE_LATEST)
