"""Deployment metadata from a CSV table: one row per deployment, matched by name in the project.

The header names the columns, in any order; only ``name`` is required:
name, site, latitude, longitude, recorder, timezone, deployed_on, retrieved_on, channel, hop_s,
speed_factor, low_hz, high_hz, server_folder. A column the table leaves out leaves that field as it is; an empty cell
clears it (timezone: UTC; channel: the mix of all channels). ``server_folder`` registers
a folder's audio for a new deployment; for an existing one it is the folder's new place
(its recordings are found again there by content).
The import is all or nothing: one bad line and nothing changes. A name, site or recorder
that starts like a spreadsheet formula (``formula_cells``) is refused, not stored.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import io
from collections.abc import Callable, Mapping

from django.db import transaction

from annotations.deployments import (
    METADATA_FIELDS,
    create_deployment,
    granted_folder,
    metadata_problems,
    move_server_folder,
    update_deployment,
)
from annotations.errors import InputError
from annotations.formula_cells import is_formula_like
from annotations.models import Deployment, Project

COLUMNS = (*METADATA_FIELDS, "server_folder")
MAX_BYTES = 5 * 1024 * 1024


@dataclasses.dataclass(frozen=True)
class DeploymentRow:
    line: int  # in the file, counted from 1 with the header
    name: str
    metadata: Mapping[str, object]  # the file's other columns, parsed; server_folder apart
    server_folder: str


@dataclasses.dataclass(frozen=True)
class MetadataImport:
    created: tuple[str, ...]
    updated: tuple[str, ...]


def _number(cell: str) -> float | None:
    return float(cell) if cell else None


def _whole_number(cell: str) -> int | None:
    return int(cell) if cell else None


def _date(cell: str) -> dt.date | None:
    return dt.date.fromisoformat(cell) if cell else None


def _time_zone(cell: str) -> str:
    return cell or "UTC"


# How each column's cell becomes a value, and what a cell that does not parse should be.
PARSERS: dict[str, tuple[Callable[[str], object], str]] = {
    "site": (str, ""),
    "recorder": (str, ""),
    "latitude": (_number, "a number"),
    "longitude": (_number, "a number"),
    "timezone": (_time_zone, ""),
    "deployed_on": (_date, "a date like 2024-05-21"),
    "retrieved_on": (_date, "a date like 2024-05-21"),
    "channel": (_whole_number, "a whole number (0 for the first channel)"),
    "hop_s": (_number, "a number of seconds, e.g. 1.5"),
    "speed_factor": (lambda cell: float(cell) if cell else 1.0, "a number, e.g. 0.1 for bats (empty: 1)"),
    "low_hz": (_number, "a frequency in Hz, e.g. 15000"),
    "high_hz": (_number, "a frequency in Hz, e.g. 120000"),
}


def parse_metadata_csv(text: str) -> list[DeploymentRow]:
    """The rows of a metadata table; raises InputError naming every bad line."""
    lines = text.splitlines()
    try:
        dialect = csv.Sniffer().sniff(lines[0] if lines else "", delimiters=",;\t")
    except csv.Error:
        dialect = csv.excel
    reader = csv.reader(io.StringIO(text), dialect)
    header = [column.strip().lower() for column in next(reader, [])]
    if "name" not in header:
        raise InputError(f"the table needs a header row with a 'name' column; the columns are {', '.join(COLUMNS)}")
    if unknown := [column for column in header if column not in COLUMNS]:
        raise InputError(f"unknown columns {', '.join(map(repr, unknown))}; the columns are {', '.join(COLUMNS)}")
    if len(set(header)) != len(header):
        raise InputError("a column appears twice in the header")
    rows, problems, seen = [], [], {}
    for cells in reader:
        if not any(cell.strip() for cell in cells):
            continue
        line = reader.line_num
        if len(cells) != len(header):
            problems.append(f"line {line}: {len(cells)} cells for {len(header)} columns")
            continue
        row, row_problems = _parse_row(line, dict(zip(header, (cell.strip() for cell in cells), strict=True)))
        if row.name in seen:
            row_problems.append(f"deployment {row.name!r} is also on line {seen[row.name]}")
        seen.setdefault(row.name, line)
        problems.extend(f"line {line}: {problem}" for problem in row_problems)
        rows.append(row)
    if problems:
        raise InputError("; ".join(problems))
    if not rows:
        raise InputError("the table has no deployments")
    return rows


def _parse_row(line: int, cells: dict[str, str]) -> tuple[DeploymentRow, list[str]]:
    metadata, problems = {}, []
    for column in ("name", "site", "recorder"):
        if is_formula_like(cells.get(column, "")):
            problems.append(f"{column} {cells[column]!r} starts like a spreadsheet formula; start it otherwise")
    for column, cell in cells.items():
        if column not in PARSERS:
            continue
        parse, expected = PARSERS[column]
        try:
            metadata[column] = parse(cell)
        except ValueError:
            problems.append(f"{column} {cell!r} is not {expected}")
    # The checks that need no other row: ranges, time zone, dates in order.
    problems += metadata_problems(Deployment(name=cells["name"], **metadata))
    return DeploymentRow(line, cells["name"], metadata, cells.get("server_folder", "")), problems


def import_deployment_metadata(project: Project, text: str) -> MetadataImport:
    """Create or update the project's deployments a metadata table describes, all or none."""
    rows = parse_metadata_csv(text)
    existing: dict[str, list[Deployment]] = {}
    for deployment in project.deployments.all():
        existing.setdefault(deployment.name, []).append(deployment)
    created, updated = [], []
    with transaction.atomic():
        for row in rows:
            try:
                matches = existing.get(row.name, [])
                if len(matches) > 1:
                    raise InputError(f"{len(matches)} deployments of this project are named {row.name!r}")
                if not matches:
                    create_deployment(project, row.name, row.server_folder, **row.metadata)
                    created.append(row.name)
                    continue
                deployment = matches[0]
                if row.server_folder and str(granted_folder(project, row.server_folder)) != deployment.server_folder:
                    move_server_folder(deployment, row.server_folder)  # its files, found again there
                update_deployment(deployment, **row.metadata)
                updated.append(row.name)
            except InputError as error:
                raise InputError(f"line {row.line}: {error}") from None
    return MetadataImport(tuple(created), tuple(updated))
