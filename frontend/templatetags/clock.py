"""One clock on every page: times in the deployment's own zone, labelled with it."""

from __future__ import annotations

import datetime as dt
import functools
import zoneinfo

from django import template

from annotations.search.filters import clock

register = template.Library()


def _zone(name: str) -> dt.tzinfo:
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return dt.UTC


@register.filter
def wall_clock(value: dt.datetime | None, zone: str = "") -> str:
    """``value`` as "YYYY-MM-DD HH:MM:SS Zone/Name": in ``zone`` (an IANA name) if given,
    else in the zone it carries. Not Django's ``date``, which shows the server's zone."""
    if value is None:
        return ""
    local = value.astimezone(_zone(zone)) if zone else value
    return f"{local:%Y-%m-%d %H:%M:%S} {getattr(local.tzinfo, 'key', 'UTC')}"


@register.filter
def time_of_day(hours: float | None) -> str:
    """Hours since midnight as a time input's value, "05:30"; nothing for no filter
    (None, or the empty string a template gives for a missing variable)."""
    return clock(hours) if isinstance(hours, int | float) else ""


@register.filter
def seconds(value: float | None) -> str:
    """A length in seconds as short as it is exact to the millisecond: 3, 1.5, 1.667."""
    return "" if value is None else f"{round(float(value), 3):g}"


@functools.cache
def _names() -> list[str]:
    return sorted(zoneinfo.available_timezones() - {"localtime", "Factory"})


@register.simple_tag
def time_zones() -> list[str]:
    """Every IANA zone name, for a choice instead of free text."""
    return _names()
