"""Route templates for labels and logs: ``/api/posts/{post_id}``, never the raw path.

Metrics label requests by route template so the number of series is bounded by the code,
not by the traffic; the access log names the template too, so log lines group by endpoint.
"""

import re
from collections.abc import Iterable

from fastapi.routing import iter_route_contexts
from starlette.applications import Starlette
from starlette.routing import BaseRoute
from starlette.types import Scope

UNMATCHED = "<unmatched>"


class RouteLabels:
    """The route template of a request, ``include_router`` prefixes included.

    FastAPI puts the matched route in ``scope["route"]``, but its ``path`` omits the
    prefixes given to ``include_router`` (``/{post_id}`` instead of ``/api/posts/{post_id}``).
    ``iter_route_contexts`` knows each route's full path, so the templates are looked up once
    per route object here. A request no route claimed (answered by a middleware: a 429, a 413,
    a cached response) is matched against the templates, and the answer remembered per path
    in a bounded map; a path matching no template is ``<unmatched>``.
    """

    MAX_REMEMBERED_PATHS = 4096

    def __init__(self, routes: Iterable[BaseRoute]) -> None:
        self.by_route: dict[int, list[tuple[re.Pattern[str], str]]] = {}
        self.templates: list[tuple[re.Pattern[str], str]] = []
        self.served: list[tuple[str, str]] = []
        self._by_path: dict[str, str] = {}
        for context in iter_route_contexts(list(routes)):
            template = context.path_format or context.path
            regex = getattr(context, "path_regex", None)
            if template is None or regex is None:
                continue
            self.by_route.setdefault(id(context.original_route), []).append((regex, template))
            self.templates.append((regex, template))
            self.served += [(method, template) for method in sorted(context.methods or ())]

    def template_of(self, route: object) -> str | None:
        """The template of ``route`` if it is served under one only (else the path decides)."""
        candidates = self.by_route.get(id(route))
        return candidates[0][1] if candidates is not None and len(candidates) == 1 else None

    def __call__(self, scope: Scope) -> str:
        route = scope.get("route")
        if route is None:
            return self._unrouted(scope["path"], scope.get("root_path", ""))
        candidates = self.by_route.get(id(route))
        if candidates is None:
            return getattr(route, "path_format", None) or UNMATCHED
        if len(candidates) == 1:
            return candidates[0][1]
        # One router included under several prefixes: the path tells which inclusion.
        return self._match(_route_path(scope["path"], scope.get("root_path", "")), candidates)

    def _unrouted(self, path: str, root_path: str) -> str:
        template = self._by_path.get(path)
        if template is None:
            template = self._match(_route_path(path, root_path), self.templates)
            if template != UNMATCHED:
                if len(self._by_path) >= self.MAX_REMEMBERED_PATHS:
                    self._by_path.clear()
                self._by_path[path] = template
        return template

    @staticmethod
    def _match(path: str, candidates: list[tuple[re.Pattern[str], str]]) -> str:
        for regex, template in candidates:
            if regex.match(path):
                return template
        return UNMATCHED


def _route_path(path: str, root_path: str) -> str:
    return path[len(root_path) :] if root_path and path.startswith(root_path) else path


def route_labels(app: Starlette) -> RouteLabels:
    """The app's `RouteLabels`, shared by the access log and the metrics. Built on the first
    request, once every router has been included."""
    labels: RouteLabels | None = getattr(app.state, "route_labels", None)
    if labels is None:
        labels = app.state.route_labels = RouteLabels(app.routes)
    return labels
