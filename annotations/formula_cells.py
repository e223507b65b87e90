"""Text that a spreadsheet would run as a formula (CSV injection), and its harmless form.

Excel, LibreOffice and Google Sheets read a cell starting with ``= + - @`` as a formula,
and some skip a leading tab or carriage return first. OWASP's advice for exported
tables: start such a cell with a single quote, which spreadsheets show as plain text.
"""

from __future__ import annotations

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def is_formula_like(text: str) -> bool:
    return text.startswith(FORMULA_STARTS)


def neutral_cell(text: str) -> str:
    """``text`` as a cell no spreadsheet runs: quoted where it would start a formula."""
    return f"'{text}" if is_formula_like(text) else text
