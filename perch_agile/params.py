"""One strict reading of numbers in query strings, headers and forms.

Python's ``int`` and ``str.isdigit`` accept more than ASCII digits (``"²".isdigit()`` is
true, ``int("٣")`` is 3), so every number a client sends is read here: ASCII only,
bounded, or an InputError that the API and pages answer with 400.
"""

from __future__ import annotations

import re

from annotations.errors import InputError

MAX_ID = 2**63 - 1  # PostgreSQL's bigint
WHOLE = re.compile(r"[0-9]{1,19}")
DECIMAL = re.compile(r"[0-9]{1,12}(\.[0-9]{1,9})?")


def whole_number(value: object, name: str, minimum: int = 0, maximum: int = MAX_ID) -> int:
    """``value`` (str or int) as an int in [minimum, maximum]."""
    text = str(value) if isinstance(value, int) and not isinstance(value, bool) else value
    if not isinstance(text, str) or not WHOLE.fullmatch(text):
        raise InputError(f"{name} must be a whole number (digits 0-9)")
    number = int(text)
    if not minimum <= number <= maximum:
        raise InputError(f"{name} must be between {minimum} and {maximum}")
    return number


def seconds(value: object, name: str, maximum: float = 366 * 86_400.0) -> float:
    """``value`` as a non-negative, finite number of seconds up to ``maximum``."""
    if not isinstance(value, str) or not DECIMAL.fullmatch(value):
        raise InputError(f"{name} must be a number of seconds (digits 0-9 and a decimal point)")
    number = float(value)
    if number > maximum:
        raise InputError(f"{name} must be at most {maximum:g} s")
    return number
