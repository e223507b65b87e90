"""When a recording started, read from recorder file names and AudioMoth WAV comments.

AudioMoth ``20240521_053000.WAV``, Song Meter ``SM4_20240521_053000.wav`` and Frontier
Labs ``20240521T053000+1000_site_1.flac`` all fit one pattern (date, optional separator,
time, optional fraction and UTC offset). Names without an offset are read in the
deployment's time zone. AudioMoth also writes the start into the WAV's comment, with
its UTC offset: "Recorded at 19:30:00 21/05/2024 (UTC+1) by AudioMoth 24F319055F4A7E7D ...".
Old AudioMoth firmware named files by the start's Unix time in hexadecimal (``5CE38C48.WAV``).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from pathlib import Path

from annotations.audio import read_wav_comment
from annotations.models import StartTimeSource

PATTERN = re.compile(
    r"(?P<date>\d{4})(?P<month>\d{2})(?P<day>\d{2})[-_T$]?"
    r"(?P<hour>\d{2})(?P<minute>\d{2})(?P<second>\d{2})(?P<fraction>\.\d{1,9})?"
    r"(?P<offset>Z|[+-]\d{4}|[+-]\d{1,2}:\d{2})?"
)
AUDIOMOTH_COMMENT = re.compile(
    r"Recorded at (?P<hour>\d{2}):(?P<minute>\d{2}):(?P<second>\d{2})(?P<fraction>\.\d{1,9})? "
    r"(?P<day>\d{2})/(?P<month>\d{2})/(?P<year>\d{4}) \(UTC(?P<offset>[+-]\d{1,2}(?::\d{2})?)?\)"
)
AUDIOMOTH_RECORDER = re.compile(r"\bby (AudioMoth [0-9A-Fa-f]{16})\b")
LEGACY_AUDIOMOTH_NAME = re.compile(r"^(?P<seconds>[0-9A-Fa-f]{8})\.wav$", re.IGNORECASE)
LEGACY_AUDIOMOTH_YEARS = (2015, 2030)
# Times outside these are no recording's start (and years near 1 overflow in UTC).
EARLIEST = dt.datetime(1900, 1, 1, tzinfo=dt.UTC)
LATEST = dt.datetime(2200, 1, 1, tzinfo=dt.UTC)


def plausible_start(start: dt.datetime) -> bool:
    return EARLIEST <= start < LATEST


def start_time_from_filename(name: str, local_tz: dt.tzinfo = dt.UTC) -> dt.datetime | None:
    """The start time a file name announces (aware; read in ``local_tz`` when the name
    gives no offset), or None when it names no valid one."""
    if legacy := LEGACY_AUDIOMOTH_NAME.match(Path(name).name):  # Unix seconds, so UTC
        start = dt.datetime.fromtimestamp(int(legacy["seconds"], 16), dt.UTC)
        # Only the years AudioMoths existed: "00000042.WAV" is a counter, not 1970.
        return start if LEGACY_AUDIOMOTH_YEARS[0] <= start.year < LEGACY_AUDIOMOTH_YEARS[1] else None
    for match in PATTERN.finditer(name):
        try:
            parts = {key: int(match[key]) for key in ("date", "month", "day", "hour", "minute", "second")}
            start = dt.datetime(
                parts["date"], parts["month"], parts["day"], parts["hour"], parts["minute"], parts["second"]
            )
            zone = _offset(match["offset"]) if match["offset"] else local_tz
        except ValueError:  # an impossible date, or an offset of a day or more
            continue
        if match["fraction"]:
            start += dt.timedelta(seconds=float(match["fraction"]))
        start = start.replace(tzinfo=zone)
        if plausible_start(start):
            return start
    return None


def _offset(text: str) -> dt.tzinfo:
    """A UTC offset written "Z", "+10", "-5:30" or "+0530". Raises ValueError for one of a day or more."""
    if text == "Z":
        return dt.UTC
    sign = -1 if text[0] == "-" else 1
    digits = text[1:].replace(":", "")
    hours, minutes = (int(digits[:-2] or 0), int(digits[-2:])) if len(digits) > 2 else (int(digits), 0)
    return dt.timezone(sign * dt.timedelta(hours=hours, minutes=minutes))


@dataclasses.dataclass(frozen=True)
class AudioMothComment:
    started_at: dt.datetime  # aware, in the recorder's UTC offset
    recorder: str  # "AudioMoth <serial>", or "" where the comment names none


def parse_audiomoth_comment(comment: str) -> AudioMothComment | None:
    """The start time (and recorder) an AudioMoth comment states, or None for other text."""
    match = AUDIOMOTH_COMMENT.search(comment)
    if not match:
        return None
    try:
        tz = _offset(match["offset"] or "Z")
        start = dt.datetime(
            int(match["year"]),
            int(match["month"]),
            int(match["day"]),
            int(match["hour"]),
            int(match["minute"]),
            int(match["second"]),
            tzinfo=tz,
        )
    except ValueError:  # an impossible date or an offset of a day or more
        return None
    if match["fraction"]:
        start += dt.timedelta(seconds=float(match["fraction"]))
    if not plausible_start(start):
        return None
    recorder = AUDIOMOTH_RECORDER.search(comment)
    return AudioMothComment(start, recorder[1] if recorder else "")


@dataclasses.dataclass(frozen=True)
class RecordingStart:
    started_at: dt.datetime | None
    source: str  # a StartTimeSource
    recorder: str = ""  # the recorder the file names itself, where it does


def recording_start(path: Path, name: str, local_tz: dt.tzinfo) -> RecordingStart:
    """When the audio file at ``path`` (originally called ``name``) started, and how that
    is known. The AudioMoth comment carries its UTC offset, so it wins over the file
    name, whose time may only be local."""
    try:
        comment = parse_audiomoth_comment(read_wav_comment(path))
    except OSError:  # unreadable: ingest will say why
        comment = None
    if comment:
        return RecordingStart(comment.started_at, StartTimeSource.WAV_COMMENT, comment.recorder)
    if started_at := start_time_from_filename(name, local_tz):
        return RecordingStart(started_at, StartTimeSource.FILENAME)
    return RecordingStart(None, StartTimeSource.UNKNOWN)
