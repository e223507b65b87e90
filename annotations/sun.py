"""Sunrise and sunset at each deployment's site, for filters relative to the sun.

Dawn chorus and dusk work is done relative to sunrise and sunset, not clock hours: 40
minutes before sunrise is 05:50 in Berlin in late March and 04:05 in June. Times come
from astral (NOAA's solar equations) for each local day at the deployment's coordinates,
and are kept in ``SunDay`` rows so that a filter is SQL over them (``annotations.search``).
A day without a sunrise or a sunset (polar day or night) has none, and its windows pass
no filter relative to it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import zoneinfo

from astral import Observer
from astral.sun import sunrise, sunset
from django.db import DEFAULT_DB_ALIAS, connections, transaction

from annotations.errors import InputError
from annotations.models import Deployment, Project, SunDay

SUN_EVENTS = ("sunrise", "sunset")
# Offsets from the event, in minutes: half a day either way.
SUN_OFFSET_MAX_MIN = 720
# When only the event is chosen: the dawn chorus.
DEFAULT_SUN_FROM_MIN = -30.0
DEFAULT_SUN_TO_MIN = 90.0


@dataclasses.dataclass(frozen=True)
class SunTimes:
    """One local day's sunrise and sunset (UTC), None where the sun does not rise or set."""

    day: dt.date
    sunrise: dt.datetime | None
    sunset: dt.datetime | None


def check_sun_filter(event: str, from_min: float | None, to_min: float | None) -> str:
    """``event`` (a SunDay column: it becomes SQL) once checked with its minutes, [from, to)."""
    if event not in SUN_EVENTS:
        raise InputError(f"the sun filter takes {' or '.join(SUN_EVENTS)}, not {event[:40]!r}")
    if from_min is None or to_min is None or not -SUN_OFFSET_MAX_MIN <= from_min < to_min <= SUN_OFFSET_MAX_MIN:
        raise InputError(
            f"minutes from {event} need a start before their end, both within "
            f"{SUN_OFFSET_MAX_MIN} minutes of it (for example -30 to 90)"
        )
    return event


def sun_times(latitude: float, longitude: float, zone: str, first: dt.date, last: dt.date) -> list[SunTimes]:
    """Sunrise and sunset of every local day from ``first`` to ``last`` (inclusive) in the
    time zone ``zone`` at the given place."""
    observer, tzinfo = Observer(latitude, longitude), zoneinfo.ZoneInfo(zone)
    days = []
    for offset in range((last - first).days + 1):
        day = first + dt.timedelta(days=offset)
        days.append(SunTimes(day, _event(sunrise, observer, day, tzinfo), _event(sunset, observer, day, tzinfo)))
    return days


def _event(event, observer: Observer, day: dt.date, tzinfo: dt.tzinfo) -> dt.datetime | None:
    try:
        return event(observer, day, tzinfo=tzinfo).astimezone(dt.UTC)
    except ValueError:  # astral: the sun is always above (or below) the horizon that day
        return None


def ensure_sun_days(project: Project) -> bool:
    """SunDay rows, on the primary, for every local day (and one either side) that a
    recording of known start touches, at each of the project's deployments with
    coordinates; those of a deployment whose place or zone changed are worked out again.
    Returns whether anything was written (a standby may not hold it yet).

    Bounded by deployments times days, never by windows: a season's year at a deployment
    is 365 rows, about 15 ms of astral once.
    """
    wanted = _days_wanted(project)
    written = False
    for deployment in Deployment.objects.using(DEFAULT_DB_ALIAS).filter(pk__in=wanted):
        first, last = wanted[deployment.pk]
        place = (deployment.latitude, deployment.longitude, deployment.timezone)
        rows = SunDay.objects.using(DEFAULT_DB_ALIAS).filter(deployment=deployment)
        held = rows.filter(day__gte=first, day__lte=last, latitude=place[0], longitude=place[1], timezone=place[2])
        if held.count() == (last - first).days + 1:
            continue
        with transaction.atomic(using=DEFAULT_DB_ALIAS):
            rows.delete()
            SunDay.objects.using(DEFAULT_DB_ALIAS).bulk_create(
                SunDay(
                    deployment=deployment,
                    day=times.day,
                    sunrise=times.sunrise,
                    sunset=times.sunset,
                    latitude=place[0],
                    longitude=place[1],
                    timezone=place[2],
                )
                for times in sun_times(*place, first, last)
            )
        written = True
    return written


def _days_wanted(project: Project) -> dict[int, tuple[dt.date, dt.date]]:
    """{deployment id: (first, last local day)} over the recordings of known start, a day
    either side, for the project's deployments with coordinates."""
    local = "r.started_at AT TIME ZONE d.timezone"
    with connections[DEFAULT_DB_ALIAS].cursor() as cursor:
        cursor.execute(
            f"SELECT d.id, min(({local})::date) - 1, "
            f"max(({local} + coalesce(r.duration_s, 0) * interval '1 second')::date) + 1 "
            "FROM annotations_recording r JOIN annotations_deployment d ON d.id = r.deployment_id "
            "WHERE d.project_id = %s AND r.started_at IS NOT NULL "
            "AND d.latitude IS NOT NULL AND d.longitude IS NOT NULL GROUP BY d.id",
            [project.pk],
        )
        return {deployment_id: (first, last) for deployment_id, first, last in cursor.fetchall()}
