"""Small charts drawn on the server as inline SVG for the admin's operations console: no JavaScript,
no external asset, nothing the page's Content Security Policy has to allow (colours come from SVG
presentation attributes and the console's own stylesheet)."""

from __future__ import annotations

import math
from collections.abc import Sequence

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe


def _num(value: float) -> str:
    return f"{value:.1f}".rstrip("0").rstrip(".")


def _nice_ceiling(value: float) -> float:
    """The smallest round number (1, 1.5, 2, 2.5, 3, 4, 5, 6 or 8 times a power of ten) >= ``value``."""
    power = 10 ** math.floor(math.log10(value))
    return next(m * power for m in (1, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10) if m * power >= value)


def bar_chart(
    bars: Sequence[tuple[str, float | None]],
    *,
    title: str,
    unit: str = "",
    width: int = 640,
    height: int = 180,
    limit: float | None = None,
) -> SafeString:
    """A vertical bar chart of ``bars`` (label, value), values >= 0. ``limit`` draws a dashed line
    (e.g. the threshold above which a value fails). Each bar carries a <title> with its exact value,
    and the chart an accessible name (``title``); a None value (no data) draws "no data" instead of a bar."""
    pad_left, pad_bottom, pad_top = 48, 22, 10
    plot_w, plot_h = width - pad_left - 4, height - pad_bottom - pad_top
    top = max([v for _, v in bars if v is not None] + ([limit] if limit is not None else []) + [0.0])
    top = _nice_ceiling(top * 1.05) if top > 0 else 1.0
    step = plot_w / max(len(bars), 1)
    bar_w = max(step * 0.7, 1.0)
    parts = [
        f'<svg class="ops-chart" role="img" aria-label="{escape(title)}" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" xmlns="http://www.w3.org/2000/svg">',
        f"<title>{escape(title)}</title>",
        f'<line x1="{pad_left}" y1="{pad_top + plot_h}" x2="{width - 4}" y2="{pad_top + plot_h}" '
        'stroke="#888" stroke-width="1"/>',
        f'<text x="{pad_left - 4}" y="{pad_top + 8}" text-anchor="end" font-size="10" fill="#555">'
        f"{escape(_num(top))}</text>",
        f'<text x="{pad_left - 4}" y="{pad_top + plot_h}" text-anchor="end" font-size="10" fill="#555">'
        "0</text>",
    ]
    label_every = max(1, len(bars) // 10)
    for i, (label, value) in enumerate(bars):
        x = pad_left + i * step + (step - bar_w) / 2
        if value is None:
            parts.append(
                f'<text x="{_num(x + bar_w / 2)}" y="{pad_top + plot_h - 4}" text-anchor="middle" '
                'font-size="10" fill="#ba2121">no data</text>'
            )
        else:
            h = plot_h * max(value, 0) / top
            parts.append(
                f'<rect class="ops-bar" x="{_num(x)}" y="{_num(pad_top + plot_h - h)}" width="{_num(bar_w)}" '
                f'height="{_num(h)}" fill="#417690">'
                f"<title>{escape(label)}: {escape(_num(value))}{escape(unit)}</title></rect>"
            )
        if i % label_every == 0:
            parts.append(
                f'<text x="{_num(x + bar_w / 2)}" y="{height - 6}" text-anchor="middle" font-size="10" '
                f'fill="#555">{escape(label)}</text>'
            )
    if limit is not None:
        y = pad_top + plot_h - plot_h * limit / top
        parts.append(
            f'<line class="ops-limit" x1="{pad_left}" y1="{_num(y)}" x2="{width - 4}" y2="{_num(y)}" '
            'stroke="#ba2121" stroke-width="1" stroke-dasharray="4 3"/>'
        )
    parts.append("</svg>")
    return mark_safe("".join(parts))  # noqa: S308 - every interpolated text is escaped above
