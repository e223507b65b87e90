"""When a recording started, read from recorder file names.

AudioMoth ``20240521_053000.WAV``, Song Meter ``SM4_20240521_053000.wav`` and Frontier
Labs ``20240521T053000+1000_site_1.flac`` all fit one pattern (date, optional separator,
time, optional fraction and UTC offset). Names without an offset are taken as UTC.
"""

from __future__ import annotations

import datetime as dt
import re

PATTERN = re.compile(
    r"(?P<date>\d{4})(?P<month>\d{2})(?P<day>\d{2})[-_T$]?"
    r"(?P<hour>\d{2})(?P<minute>\d{2})(?P<second>\d{2})(?P<fraction>\.\d{1,9})?"
    r"(?P<offset>Z|[+-]\d{4}|[+-]\d{1,2}:\d{2})?"
)


def start_time_from_filename(name: str) -> dt.datetime | None:
    """The start time a file name announces (aware), or None when it names no valid one."""
    for match in PATTERN.finditer(name):
        try:
            parts = {key: int(match[key]) for key in ("date", "month", "day", "hour", "minute", "second")}
            start = dt.datetime(
                parts["date"], parts["month"], parts["day"], parts["hour"], parts["minute"], parts["second"]
            )
        except ValueError:
            continue
        if match["fraction"]:
            start += dt.timedelta(seconds=float(match["fraction"]))
        return start.replace(tzinfo=_offset(match["offset"]))
    return None


def _offset(text: str | None) -> dt.tzinfo:
    if not text or text == "Z":
        return dt.UTC
    sign = -1 if text[0] == "-" else 1
    digits = text[1:].replace(":", "")
    hours, minutes = (int(digits[:-2] or 0), int(digits[-2:])) if len(digits) > 2 else (int(digits), 0)
    return dt.timezone(sign * dt.timedelta(hours=hours, minutes=minutes))
