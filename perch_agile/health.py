"""``/healthz``: the liveness answer a container healthcheck or a load balancer asks for.

It sits first among the middleware, so that it answers before the host check and the
HTTPS redirect: a healthcheck inside the container calls ``127.0.0.1``, which is not one
of the site's hosts, over plain HTTP. It says only "ok" or that the database is
unreachable, nothing a stranger could use.
"""

from __future__ import annotations

from collections.abc import Callable

from django.db import DatabaseError, connection
from django.http import HttpRequest, HttpResponse

HEALTH_PATH = "/healthz"


def database_reachable() -> bool:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return True
    except DatabaseError:
        return False


def health_check(get_response: Callable[[HttpRequest], HttpResponse]) -> Callable[[HttpRequest], HttpResponse]:
    def middleware(request: HttpRequest) -> HttpResponse:
        if request.path != HEALTH_PATH:
            return get_response(request)
        if database_reachable():
            return HttpResponse("ok\n", content_type="text/plain")
        return HttpResponse("database unreachable\n", status=503, content_type="text/plain")

    return middleware
