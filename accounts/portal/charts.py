"""The dashboard's 30-day chart, drawn on the server as SVG geometry (no chart library, no script)."""

from __future__ import annotations

from datetime import date, timedelta

STATUS_CLASSES = ("2xx", "3xx", "4xx", "5xx")
WIDTH, HEIGHT, GAP = 600, 160, 2


def calls_per_day(rows: list[dict], *, end: date, days: int = 30) -> dict:
    """Stacked bars (one per day, ``end`` included) split by status class, from
    ``billing.selectors.usage_report(group_by="day")`` rows."""
    by_day = {r["day"]: r for r in rows}
    first = end - timedelta(days=days - 1)
    counts = []
    for i in range(days):
        day = (first + timedelta(days=i)).isoformat()
        row = by_day.get(day)
        counts.append((day, {c: (row["by_status"][c] if row else 0) for c in STATUS_CLASSES}))
    peak = max((sum(c.values()) for _d, c in counts), default=0) or 1
    slot = WIDTH / days
    bars = []
    for i, (day, by_status) in enumerate(counts):
        y = float(HEIGHT)
        segments = []
        for status_class in STATUS_CLASSES:
            n = by_status[status_class]
            if not n:
                continue
            h = HEIGHT * n / peak
            y -= h
            segments.append({"cls": status_class, "y": round(y, 2), "h": round(h, 2), "n": n})
        total = sum(by_status.values())
        bars.append(
            {
                "day": day,
                "x": round(i * slot + GAP / 2, 2),
                "w": round(slot - GAP, 2),
                "segments": segments,
                "total": total,
                "label": f"{day}: {total} calls ("
                + ", ".join(f"{c} {by_status[c]}" for c in STATUS_CLASSES)
                + ")",
            }
        )
    totals = {c: sum(b[c] for _d, b in counts) for c in STATUS_CLASSES}
    return {
        "bars": bars,
        "peak": peak,
        "width": WIDTH,
        "height": HEIGHT,
        "totals": totals,
        "first": first,
        "end": end,
    }
