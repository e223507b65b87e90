"""Small SVG charts drawn on the server: no JavaScript library, nothing from a CDN."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

from annotations.probes import PrecisionRecall

WIDTH, HEIGHT, PAD = 320, 220, 36


def _frame(title: str, x_label: str, y_label: str, body: str) -> SafeString:
    plot_w, plot_h = WIDTH - 2 * PAD, HEIGHT - 2 * PAD
    ticks = "".join(
        f'<text x="{PAD - 4}" y="{PAD + plot_h - plot_h * t + 4:.1f}" text-anchor="end">{t:g}</text>'
        for t in (0, 0.5, 1)
    )
    return mark_safe(
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" role="img" '
        f'aria-label="{escape(title)}"><title>{escape(title)}</title>'
        f'<rect x="{PAD}" y="{PAD}" width="{plot_w}" height="{plot_h}" fill="#fff" stroke="#d6ddd9"/>'
        f"{ticks}{body}"
        f'<text x="{PAD + plot_w / 2}" y="{HEIGHT - 6}" text-anchor="middle">{escape(x_label)}</text>'
        f'<text x="10" y="{PAD + plot_h / 2}" text-anchor="middle" '
        f'transform="rotate(-90 10 {PAD + plot_h / 2})">{escape(y_label)}</text>'
        f'<text x="{PAD}" y="{PAD - 10}">{escape(title)}</text></svg>'
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


def bar_chart(title: str, labels: Sequence[str], values: Sequence[int]) -> SafeString:
    """Vertical bars, e.g. detections per site and day."""
    plot_w, plot_h = WIDTH - 2 * PAD, HEIGHT - 2 * PAD
    top = max(values, default=0) or 1
    bar_w = plot_w / max(1, len(values))
    bars = "".join(
        f'<rect x="{PAD + i * bar_w + 1:.1f}" y="{PAD + plot_h - plot_h * v / top:.1f}" '
        f'width="{max(1.0, bar_w - 2):.1f}" height="{plot_h * v / top:.1f}" fill="#2f6b4f">'
        f"<title>{escape(label)}: {v}</title></rect>"
        for i, (label, v) in enumerate(zip(labels, values, strict=True))
    )
    return _frame(f"{title} (max {top})", "site and day (hover for details)", "share of max", bars)
