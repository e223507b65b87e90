"""Reads served by hot standbys (PostgreSQL's streaming replication), writes by the primary.

``PERCH_AGILE_REPLICA_URLS`` names the standbys (settings adds each as a database alias
``standby_N``). Searches and review queues run inside ``standby_reads(user)``; there
``ReadRouter`` sends the ORM's reads, and the raw SQL that asks Django's router where to
read (``router.db_for_read``), to the standby chosen for that request. Every write goes
to the primary, inside the block or not.

A standby serves a request only when all of these hold, and the primary serves it
otherwise, with no error:
- it answers (one that does not is skipped for ``DOWN_FOR_S`` seconds, so a stopped
  standby costs one failed connection per process, not one per request);
- it is at most ``PERCH_AGILE_REPLICA_MAX_LAG_S`` seconds behind the primary;
- it has replayed the user's own last write (read-your-writes): after each write request
  the primary's WAL position is kept for that user in the shared cache, and a standby
  must have replayed up to it.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import logging
import random
import time
from collections.abc import Callable, Iterator

from django.conf import settings
from django.core.cache import cache
from django.db import DEFAULT_DB_ALIAS, DatabaseError, connections
from django.http import HttpRequest, HttpResponse
from redis.exceptions import RedisError

logger = logging.getLogger(__name__)

STANDBY_PREFIX = "standby_"
DOWN_FOR_S = 30.0
WRITE_POSITION_TTL_S = 3600  # past this, any standby within the lag bound has replayed it
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})

_read_alias: contextvars.ContextVar[str] = contextvars.ContextVar("read_alias", default=DEFAULT_DB_ALIAS)
_down_until: dict[str, float] = {}  # per process: standbys that did not answer, until when


@dataclasses.dataclass(frozen=True)
class ReadSource:
    """Which database served a request's reads, and how far its state is behind the primary."""

    alias: str
    lag_s: float = 0.0

    @property
    def standby(self) -> bool:
        return self.alias != DEFAULT_DB_ALIAS


class ReadRouter:
    """Reads from the database ``standby_reads`` chose (the primary outside it); writes,
    relations and migrations on the primary alone."""

    def db_for_read(self, model, **hints) -> str:
        return _read_alias.get()

    def db_for_write(self, model, **hints) -> str:
        return DEFAULT_DB_ALIAS

    def allow_relation(self, obj1, obj2, **hints) -> bool:
        return True

    def allow_migrate(self, db, app_label, model_name=None, **hints) -> bool:
        return db == DEFAULT_DB_ALIAS


def standby_aliases() -> list[str]:
    return [alias for alias in settings.DATABASES if alias.startswith(STANDBY_PREFIX)]


def lsn_number(lsn: str) -> int:
    """PostgreSQL's WAL position "16/B374D848" as a number, to compare positions."""
    high, low = lsn.split("/")
    return (int(high, 16) << 32) | int(low, 16)


def _write_position_key(user_id: int) -> str:
    return f"replicas:written:{user_id}"


def primary_position() -> int:
    with connections[DEFAULT_DB_ALIAS].cursor() as cursor:
        cursor.execute("SELECT pg_current_wal_insert_lsn()::text")
        return lsn_number(cursor.fetchone()[0])


def remember_write(user_id: int) -> None:
    """Keep the primary's WAL position after a user's write: their next reads need it."""
    cache.set(_write_position_key(user_id), primary_position(), WRITE_POSITION_TTL_S)


def _standby_state(alias: str, primary: int) -> tuple[int, float]:
    """(replayed WAL position, seconds behind the primary) of a standby."""
    with connections[alias].cursor() as cursor:
        cursor.execute(
            "SELECT pg_last_wal_replay_lsn()::text, "
            "extract(epoch FROM clock_timestamp() - pg_last_xact_replay_timestamp())::float8"
        )
        replayed_lsn, since_last_replay = cursor.fetchone()
    if replayed_lsn is None:  # not a standby: a misconfigured URL must not serve as one
        raise DatabaseError(f"{alias} is not in recovery")
    replayed = lsn_number(replayed_lsn)
    # Caught up: no lag, however long ago the last transaction was. Behind: as old as the
    # last transaction it replayed.
    if replayed >= primary:
        return replayed, 0.0
    # None: nothing replayed since it started, so how old its state is cannot be told.
    return replayed, float("inf") if since_last_replay is None else max(since_last_replay, 0.0)


def choose_read_source(user_id: int | None) -> ReadSource:
    """A standby that may serve this user's reads now, or the primary."""
    standbys = [alias for alias in standby_aliases() if _down_until.get(alias, 0.0) <= time.monotonic()]
    if not standbys:
        return ReadSource(DEFAULT_DB_ALIAS)
    try:
        needed = cache.get(_write_position_key(user_id)) if user_id else None
        primary = primary_position()
    except (RedisError, DatabaseError):  # what the user wrote is unknown: only the primary is sure to hold it
        return ReadSource(DEFAULT_DB_ALIAS)
    random.shuffle(standbys)  # spread the reads
    for alias in standbys:
        try:
            replayed, lag_s = _standby_state(alias, primary)
        except DatabaseError:
            _down_until[alias] = time.monotonic() + DOWN_FOR_S
            with contextlib.suppress(DatabaseError):
                connections[alias].close()
            continue
        if lag_s <= settings.PERCH_AGILE_REPLICA_MAX_LAG_S and (needed is None or replayed >= needed):
            return ReadSource(alias, lag_s)
    return ReadSource(DEFAULT_DB_ALIAS)


@contextlib.contextmanager
def standby_reads(user) -> Iterator[ReadSource]:
    """Within the block, reads go to a standby that may serve ``user`` (see the module)."""
    source = choose_read_source(user.pk if user.is_authenticated else None)
    token = _read_alias.set(source.alias)
    try:
        yield source
    finally:
        _read_alias.reset(token)


def remember_writes(get_response: Callable[[HttpRequest], HttpResponse]) -> Callable[[HttpRequest], HttpResponse]:
    """Middleware: after a user's successful write request, keep the primary's position."""

    def middleware(request: HttpRequest) -> HttpResponse:
        response = get_response(request)
        user = getattr(request, "user", None)
        if (
            request.method not in SAFE_METHODS
            and response.status_code < 400
            and user is not None
            and user.is_authenticated
            and standby_aliases()
        ):
            try:
                remember_write(user.pk)
            except (RedisError, DatabaseError):
                # The write itself succeeded: answer it. While the cache is down, reads
                # go to the primary (choose_read_source).
                logger.warning("could not keep the WAL position of user %s's write", user.pk, exc_info=True)
        return response

    return middleware
