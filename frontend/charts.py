"""Small SVG charts drawn on the server: no JavaScript library, nothing from a CDN.

Each chart is a whole SVG document (namespace, fonts and colours as attributes, not
page CSS), so that the page's download buttons save it as it looks (app.js).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
from collections.abc import Iterable, Sequence

import numpy as np
from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

from annotations.detection_rates import SUN_BIN_MIN, Rate, SiteRates, SunRates
from annotations.learning_curve import CurvePoint
from annotations.models import Deployment
from annotations.probes import PrecisionRecall

WIDTH, HEIGHT, PAD = 320, 220, 36


def _svg(title: str, width: int, height: int, body: str) -> SafeString:
    return mark_safe(
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" viewBox="0 0 {width} {height}" width="{width}" '
        f'height="{height}" role="img" aria-label="{escape(title)}" font-family="system-ui, sans-serif" '
        f'font-size="10" fill="#5d6b64"><title>{escape(title)}</title>{body}</svg>'
    )


def _frame(title: str, x_label: str, y_label: str, body: str) -> SafeString:
    plot_w, plot_h = WIDTH - 2 * PAD, HEIGHT - 2 * PAD
    ticks = "".join(
        f'<text x="{PAD - 4}" y="{PAD + plot_h - plot_h * t + 4:.1f}" text-anchor="end">{t:g}</text>'
        for t in (0, 0.5, 1)
    )
    return _svg(
        title,
        WIDTH,
        HEIGHT,
        f'<rect x="{PAD}" y="{PAD}" width="{plot_w}" height="{plot_h}" fill="#fff" stroke="#d6ddd9"/>'
        f"{ticks}{body}"
        f'<text x="{PAD + plot_w / 2}" y="{HEIGHT - 6}" text-anchor="middle">{escape(x_label)}</text>'
        f'<text x="10" y="{PAD + plot_h / 2}" text-anchor="middle" '
        f'transform="rotate(-90 10 {PAD + plot_h / 2})">{escape(y_label)}</text>'
        f'<text x="{PAD}" y="{PAD - 10}">{escape(title)}</text>',
    )


def _point(x: float, y: float) -> tuple[float, float]:
    """Plot coordinates of (x, y) in [0, 1]^2."""
    plot_w, plot_h = WIDTH - 2 * PAD, HEIGHT - 2 * PAD
    return PAD + plot_w * x, PAD + plot_h * (1 - y)


def pr_curve(curve: PrecisionRecall | None, threshold: float) -> SafeString:
    """Precision against recall on the held-out labels, with the chosen threshold marked."""
    if curve is None or not len(curve.thresholds):
        return _frame("Precision–recall (held out)", "recall", "precision", "")
    points = " ".join("{:.1f},{:.1f}".format(*_point(r, p)) for r, p in zip(curve.recall, curve.precision, strict=True))
    precision, recall = curve.at(threshold)
    cx, cy = _point(recall, precision)
    marker = (
        f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="4" fill="#a3262a"><title>threshold {threshold:.2f}: '
        f"precision {precision:.2f}, recall {recall:.2f}</title></circle>"
    )
    body = f'<polyline points="{points}" fill="none" stroke="#2f6b4f" stroke-width="2"/>{_pick_points(curve)}{marker}'
    return _frame("Precision–recall (held out)", "recall", "precision", body)


PICK_POINTS = 100


def _pick_points(curve: PrecisionRecall) -> str:
    """Invisible targets along the curve: clicking one chooses its threshold (app.js)."""
    chosen = np.unique(np.linspace(0, len(curve.thresholds) - 1, min(PICK_POINTS, len(curve.thresholds))).astype(int))
    targets = []
    for i in chosen:
        x, y = _point(curve.recall[i], curve.precision[i])
        t, p, r = curve.thresholds[i], curve.precision[i], curve.recall[i]
        targets.append(
            f'<circle class="pick" cx="{x:.1f}" cy="{y:.1f}" r="6" data-pick-threshold="{t:.4f}">'
            f"<title>threshold {t:.2f}: precision {p:.2f}, recall {r:.2f} (click to choose)</title></circle>"
        )
    return "".join(targets)


def score_histogram(targets: np.ndarray, scores: np.ndarray, threshold: float, bins: int = 20) -> SafeString:
    """Held-out scores of positives (green) and negatives (red) in bins, threshold as a line."""
    plot_w, plot_h = WIDTH - 2 * PAD, HEIGHT - 2 * PAD
    edges = np.linspace(0, 1, bins + 1)
    positives, _ = np.histogram(scores[targets], edges)
    negatives, _ = np.histogram(scores[~targets], edges)
    top = max(1, int(max(positives.max(initial=0), negatives.max(initial=0))))
    bar_w = plot_w / bins / 2
    bars = []
    for i in range(bins):
        for offset, count, colour in ((0, positives[i], "#2f6b4f"), (bar_w, negatives[i], "#a3262a")):
            h = plot_h * count / top
            bars.append(
                f'<rect x="{PAD + i * 2 * bar_w + offset:.1f}" y="{PAD + plot_h - h:.1f}" width="{bar_w:.1f}" '
                f'height="{h:.1f}" fill="{colour}"><title>{count}</title></rect>'
            )
    x = PAD + plot_w * threshold
    line = f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{PAD}" y2="{PAD + plot_h}" stroke="#1d2a24" stroke-dasharray="4 3"/>'
    return _frame(f"Held-out scores (max {top} per bin)", "score", "share of max", "".join(bars) + line)


GREEN, GREY, INK = "#2f6b4f", "#e4e8e6", "#1d2a24"


def _nice(value: float) -> float:
    """The smallest 1, 2 or 5 times a power of ten at or above ``value`` (1 for none)."""
    if value <= 0:
        return 1.0
    power = 10 ** math.floor(math.log10(value))
    return next(step * power for step in (1, 2, 5, 10) if step * power >= value * (1 - 1e-9))


@dataclasses.dataclass(frozen=True)
class Bar:
    """One bar of a bar chart: its height (None: no effort there), tick text, hover text."""

    value: float | None
    tick: str
    hover: str


def rate_bars(title: str, x_label: str, y_label: str, bars: Sequence[Bar], width: int = 640) -> SafeString:
    """Bars of a rate over days or hours; where there was no effort a grey band, so that
    unknown reads apart from 0. Ticks on both axes and a legend."""
    height, left, right, top, bottom = 250, 48, 12, 44, 44
    plot_w, plot_h = width - left - right, height - top - bottom
    y_top = _nice(max((bar.value for bar in bars if bar.value is not None), default=0))
    step = plot_w / max(1, len(bars))
    every = max(1, math.ceil(len(bars) * 48 / plot_w))  # a tick label every 48 px or more
    parts = [f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="#fff" stroke="#d6ddd9"/>']
    for fraction in (0, 0.25, 0.5, 0.75, 1):
        y = top + plot_h * (1 - fraction)
        parts.append(
            f'<line x1="{left}" x2="{left + plot_w}" y1="{y:.1f}" y2="{y:.1f}" stroke="#eef1ef"/>'
            f'<text x="{left - 4}" y="{y + 3:.1f}" text-anchor="end">{y_top * fraction:g}</text>'
        )
    for i, bar in enumerate(bars):
        x = left + i * step
        if bar.value is None:
            parts.append(
                f'<rect x="{x:.1f}" y="{top}" width="{step:.1f}" height="{plot_h}" fill="{GREY}">'
                f"<title>{escape(bar.hover)}</title></rect>"
            )
        else:
            h = plot_h * bar.value / y_top
            parts.append(
                f'<rect x="{x + step * 0.1:.1f}" y="{top + plot_h - h:.1f}" width="{max(1.0, step * 0.8):.1f}" '
                f'height="{h:.1f}" fill="{GREEN}"><title>{escape(bar.hover)}</title></rect>'
            )
        if i % every == 0:
            parts.append(
                f'<line x1="{x + step / 2:.1f}" x2="{x + step / 2:.1f}" y1="{top + plot_h}" y2="{top + plot_h + 4}" '
                f'stroke="{INK}"/><text x="{x + step / 2:.1f}" y="{top + plot_h + 15}" text-anchor="middle">'
                f"{escape(bar.tick)}</text>"
            )
    legend_x = left + plot_w - 290
    parts.append(
        f'<rect x="{legend_x}" y="{top - 16}" width="10" height="10" fill="{GREEN}"/>'
        f'<text x="{legend_x + 14}" y="{top - 7}">{escape(y_label)}</text>'
        f'<rect x="{legend_x + 210}" y="{top - 16}" width="10" height="10" fill="{GREY}" stroke="#c5ccc8"/>'
        f'<text x="{legend_x + 224}" y="{top - 7}">no recording</text>'
        f'<text x="{left + plot_w / 2}" y="{height - 8}" text-anchor="middle">{escape(x_label)}</text>'
        f'<text x="12" y="{top + plot_h / 2}" text-anchor="middle" '
        f'transform="rotate(-90 12 {top + plot_h / 2})">{escape(y_label)}</text>'
        f'<text x="{left}" y="16" font-size="12" fill="{INK}">{escape(title)}</text>'
    )
    return _svg(title, width, height, "".join(parts))


def daily_rate_chart(label: str, days: Sequence[tuple[dt.date, Rate]], zone: str) -> SafeString:
    return rate_bars(
        f"{label}: detections per recorded hour, per day",
        f"local day ({zone})",
        "detections per recorded hour",
        [
            Bar(
                rate.per_hour,
                f"{day:%d %b}",
                f"{day}: {rate.detections} detections in {rate.recorded_hours:.2f} h"
                if rate.effort
                else f"{day}: no recording",
            )
            for day, rate in days
        ],
    )


def diel_chart(label: str, hours: Sequence[Rate], zone: str) -> SafeString:
    return rate_bars(
        f"{label}: detections per recorded hour, by hour of day",
        f"local hour of day ({zone})",
        "detections per recorded hour",
        [
            Bar(
                rate.per_hour,
                f"{hour:02d}:00",
                f"{hour:02d}:00–{hour + 1:02d}:00: {rate.detections} detections in {rate.recorded_hours:.2f} h"
                if rate.effort
                else f"{hour:02d}:00–{hour + 1:02d}:00: no recording",
            )
            for hour, rate in enumerate(hours)
        ],
        width=480,
    )


def sun_chart(rates: SunRates) -> SafeString:
    """Detections per recorded hour by quarter hour around the day's sunrise or sunset."""

    def span(offset: int) -> str:
        return f"{offset:+d} to {offset + SUN_BIN_MIN:+d} min"

    return rate_bars(
        f"{rates.label}: detections per recorded hour around {rates.event}",
        f"minutes from {rates.event} (each day's, at the deployment)",
        "detections per recorded hour",
        [
            Bar(
                rate.per_hour,
                f"{offset:+d}",
                f"{span(offset)}: {rate.detections} detections in {rate.recorded_hours:.2f} h"
                if rate.effort
                else f"{span(offset)}: no recording",
            )
            for offset, rate in rates.quarters
        ],
        width=480,
    )


@dataclasses.dataclass(frozen=True)
class MapPoint:
    name: str
    latitude: float
    longitude: float
    rate: float | None  # detections per recorded hour; None: no finished run here
    hover: str


KM_PER_DEGREE = 111.32


def site_map(title: str, points: Sequence[MapPoint], width: int = 480, height: int = 360) -> SafeString:
    """The points on an equirectangular projection about their mean latitude, drawn from
    the coordinates alone (no map tiles): circle area for the rate, a scale bar in km,
    degree ticks and a legend."""
    left, right, top, bottom = 64, 16, 40, 36  # the left margin holds the latitude ticks
    plot_w, plot_h = width - left - right, height - top - bottom
    mean_lat = sum(p.latitude for p in points) / len(points)
    squash = max(0.05, math.cos(math.radians(mean_lat)))  # a degree of longitude is this many of latitude
    xs = [p.longitude * squash for p in points]
    ys = [p.latitude for p in points]
    span = max(max(xs) - min(xs), max(ys) - min(ys), 0.01) * 1.25  # degrees of latitude across the frame
    scale = min(plot_w, plot_h) / span  # px per degree of latitude
    cx, cy = (max(xs) + min(xs)) / 2, (max(ys) + min(ys)) / 2

    def place(x: float, y: float) -> tuple[float, float]:
        return left + plot_w / 2 + (x - cx) * scale, top + plot_h / 2 - (y - cy) * scale

    parts = [f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="#f6f8f7" stroke="#d6ddd9"/>']
    for fraction in (0, 0.5, 1):  # degree ticks along the bottom and the left edge
        lon = (cx + (fraction - 0.5) * plot_w / scale) / squash
        lat = cy + (fraction - 0.5) * plot_h / scale
        x, y = left + plot_w * fraction, top + plot_h * (1 - fraction)
        anchor = {0: "start", 1: "end"}.get(fraction, "middle")
        parts.append(
            f'<text x="{x:.1f}" y="{top + plot_h + 14}" text-anchor="{anchor}">{lon:.3f}°</text>'
            f'<text x="{left - 4}" y="{y + 3:.1f}" text-anchor="end">{lat:.3f}°</text>'
        )
    top_rate = max((p.rate for p in points if p.rate is not None), default=0) or 1.0
    for point in sorted(points, key=lambda p: -(p.rate or 0)):  # small circles drawn over big ones
        x, y = place(point.longitude * squash, point.latitude)
        if point.rate is None:
            r = 4.0
            circle = f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{r}" fill="none" stroke="#8a958f" stroke-width="1.5">'
        else:
            r = 3 + 15 * math.sqrt(point.rate / top_rate)
            circle = (
                f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{r:.1f}" fill="{GREEN}" fill-opacity="0.6" stroke="{GREEN}">'
            )
        parts.append(
            f"{circle}<title>{escape(point.hover)}</title></circle>"
            f'<text x="{x + r + 3:.1f}" y="{y + 3:.1f}" fill="{INK}">{escape(point.name)}</text>'
        )
    km = _nice(plot_w / 4 / scale * KM_PER_DEGREE) / 2  # a bar of a round length, under half the frame
    bar_px, bar_y = km / KM_PER_DEGREE * scale, top + plot_h - 10
    parts.append(
        f'<line x1="{left + 10}" x2="{left + 10 + bar_px:.1f}" y1="{bar_y}" y2="{bar_y}" stroke="{INK}" '
        f'stroke-width="2"/><text x="{left + 10}" y="{bar_y - 5}">{km:g} km</text>'
        f'<circle cx="{left + 5}" cy="{top - 12}" r="5" fill="{GREEN}" fill-opacity="0.6" stroke="{GREEN}"/>'
        f'<text x="{left + 14}" y="{top - 8}">area: detections per recorded hour (max {top_rate:.3g})</text>'
        f'<circle cx="{left + 270}" cy="{top - 12}" r="4" fill="none" stroke="#8a958f" stroke-width="1.5"/>'
        f'<text x="{left + 278}" y="{top - 8}">no finished run</text>'
        f'<text x="{left}" y="16" font-size="12" fill="{INK}">{escape(title)}</text>'
        f'<text x="{left + plot_w / 2}" y="{height - 6}" text-anchor="middle">longitude, latitude (WGS 84)</text>'
    )
    return _svg(title, width, height, "".join(parts))


def site_maps(deployments: Iterable[Deployment], sites: Sequence[SiteRates]) -> list[tuple[str, SafeString]]:
    """(label, map) per label of the deployments that have coordinates: circles sized by
    the rate of ``sites`` (one classifier's runs), hollow where it has no finished run."""
    placed = [d for d in deployments if d.latitude is not None and d.longitude is not None]
    if not sites or not placed:
        return []
    by_deployment = {site.deployment.pk: site for site in sites}
    maps = []
    for index, label in enumerate(rate.label for rate in sites[0].rates):
        points = []
        for deployment in placed:
            site = by_deployment.get(deployment.pk)
            rate = site.rates[index].rate if site else None
            hover = (
                f"{deployment.name}: {rate.detections} detections in {rate.recorded_hours:.2f} h"
                if rate
                else f"{deployment.name}: no finished run of this classifier"
            )
            name = deployment.site or deployment.name
            points.append(
                MapPoint(name, deployment.latitude, deployment.longitude, rate.per_hour if rate else None, hover)
            )
        maps.append((label, site_map(f"{label}: detections per recorded hour by deployment", points)))
    return maps


def learning_curve(points: Sequence[CurvePoint], current_version: int) -> SafeString:
    """Held-out ROC-AUC (line) and average precision (dashed) against the labels each
    version learned from; filled points share the held-out deployments' evaluation set,
    hollow ones each held out other time blocks; the current version ringed."""
    title = "Learning curve (held out)"
    measured = [p for p in points if p.roc_auc is not None]
    if not measured:
        return _frame(title, "labeled windows trained on", "quality", "")
    most = _nice(max(p.labels for p in measured))
    body = []
    for field, dash in (("roc_auc", ""), ("average_precision", ' stroke-dasharray="4 3"')):
        line = " ".join("{:.1f},{:.1f}".format(*_point(p.labels / most, getattr(p, field))) for p in measured)
        body.append(f'<polyline points="{line}" fill="none" stroke="{GREEN}" stroke-width="1.5"{dash}/>')
    for p in measured:
        x, y = _point(p.labels / most, p.roc_auc)
        fill = GREEN if p.comparable else "#fff"
        ring = ' stroke-width="3"' if p.version == current_version else ""
        body.append(
            f'<circle cx="{x:.1f}" cy="{y:.1f}" r="4" fill="{fill}" stroke="{GREEN}"{ring}><title>v{p.version}: '
            f"{p.labels} labels, ROC-AUC {p.roc_auc:.3f}, AP {p.average_precision:.3f} "
            f"(on {escape(p.evaluated_on)})</title></circle>"
        )
    right = f'<text x="{WIDTH - PAD}" y="{HEIGHT - PAD + 12}" text-anchor="end">{most:g}</text>'
    return _frame(title, "labeled windows trained on (— ROC-AUC, - - AP)", "quality", "".join(body) + right)
