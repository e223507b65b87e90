"""Frequencies as the pages show them."""

from __future__ import annotations

from django import template

register = template.Library()


@register.filter
def khz(hz: float | None) -> str:
    """12345.0 -> "12.3" (kHz, one decimal)."""
    return "" if hz is None else f"{hz / 1000:.1f}"
