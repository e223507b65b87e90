"""How the model's own predictions read on a page."""

import math

from django import template

register = template.Library()


@register.filter
def class_label(name: str) -> str:
    """BirdNET's "Turdus merula_Eurasian Blackbird" as "Eurasian Blackbird (Turdus merula)"."""
    scientific, _, common = name.partition("_")
    return f"{common} ({scientific})" if common else name


@register.filter
def probability(logit: float) -> float:
    """The model's sigmoid score of a logit, 0-1 (both BirdNET and Perch heads are sigmoid)."""
    return 1.0 / (1.0 + math.exp(-max(-60.0, min(60.0, float(logit)))))
