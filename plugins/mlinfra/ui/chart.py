"""Small inline SVG time charts a reader can use: axes, time labels, values on hover, named thresholds.

    >>> svg = time_chart([(0, 10.0), (300, 55.0)], lo=0, hi=100, unit="%", start=0, end=600,
    ...                  thresholds=[(95, "GPUSaturated")], label="GPU 0 utilization")
    >>> "<title>1970-01-01 00:05 UTC: 55.0 %</title>" in svg, 'data-threshold="GPUSaturated"' in svg
    (True, True)

No plotting library and no JavaScript: hovering a point shows its time and value
through SVG ``<title>`` (every browser's own tooltip). The y range is fixed per metric
(``lo``/``hi``) so charts of two GPUs compare at a glance; values outside it are
clipped to the edge. The x axis is the page's window, so a window longer than the
data shows where the data starts. A gap of more than three sweep intervals breaks
the line. Threshold lines are dashed and named (``data-threshold``); the page's
legend says what they are, so no text is drawn over the data.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from datetime import UTC, datetime
from html import escape

WIDTH = 320
HEIGHT = 96
LEFT, RIGHT, TOP, BOTTOM = 34.0, 8.0, 6.0, 16.0


def _when(t: float, span: float) -> str:
    dt = datetime.fromtimestamp(t, UTC)
    return dt.strftime("%H:%M") if span <= 36 * 3600 else dt.strftime("%m-%d %H:%M")


def _num(v: float) -> str:
    return f"{v:.0f}" if abs(v) >= 10 or v == int(v) else f"{v:.1f}"


def _segments(ts: Sequence[float]) -> list[tuple[int, int]]:
    """Index ranges [i, j) of points drawn as one line: broken where a gap exceeds 3 steps."""
    if len(ts) < 3:
        return [(0, len(ts))]
    step = statistics.median(b - a for a, b in zip(ts, ts[1:], strict=False)) or 1.0
    out, first = [], 0
    for i in range(1, len(ts)):
        if ts[i] - ts[i - 1] > 3 * step:
            out.append((first, i))
            first = i
    out.append((first, len(ts)))
    return out


def time_chart(
    points: Sequence[Sequence[float]],
    *,
    lo: float | None = None,
    hi: float | None = None,
    start: float | None = None,
    end: float | None = None,
    unit: str = "",
    thresholds: Sequence[tuple[float, str]] = (),
    label: str = "",
    css_class: str = "chart",
) -> str:
    """An ``<svg>`` chart of ``points`` (``[(t, value), ...]``, time-ordered, t in epoch seconds)."""
    suffix = f" {unit}" if unit else ""
    title = f"<title>{escape(label)}</title>" if label else ""
    head = (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="{escape(css_class)}" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'role="img" aria-label="{escape(label)}">{title}'
    )
    ts = [float(p[0]) for p in points]
    vs = [float(p[1]) for p in points]
    t0 = (ts[0] if ts else 0.0) if start is None else start
    t1 = (ts[-1] if ts else 1.0) if end is None else end
    v0 = (min(vs) if vs else 0.0) if lo is None else lo
    v1 = (max(vs) if vs else 1.0) if hi is None else hi
    if v1 <= v0:
        v0, v1 = v0 - 1.0, v0 + 1.0
    span_t = (t1 - t0) or 1.0
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def x(t: float) -> float:
        return LEFT + plot_w * min(max((t - t0) / span_t, 0.0), 1.0)

    def y(v: float) -> float:
        return TOP + plot_h * (1 - min(max((v - v0) / (v1 - v0), 0.0), 1.0))

    parts = [head]
    # Axes: three value gridlines with labels on the left, three times below.
    for v in (v0, (v0 + v1) / 2, v1):
        parts.append(
            f'<line class="chart-grid" x1="{LEFT}" y1="{y(v):.1f}" x2="{WIDTH - RIGHT}" y2="{y(v):.1f}"/>'
        )
        parts.append(
            f'<text class="chart-axis" x="{LEFT - 3}" y="{y(v) + 3:.1f}" text-anchor="end">{escape(_num(v) + suffix)}</text>'
        )
    for t, anchor in ((t0, "start"), ((t0 + t1) / 2, "middle"), (t1, "end")):
        text = _when(t, span_t) + (" UTC" if anchor == "end" else "")
        parts.append(
            f'<text class="chart-axis" x="{x(t):.1f}" y="{HEIGHT - 3}" text-anchor="{anchor}">{escape(text)}</text>'
        )
    for value, name in thresholds:
        if v0 < value < v1:
            parts.append(
                f'<line class="chart-threshold" data-threshold="{escape(name)}" x1="{LEFT}" y1="{y(value):.1f}" '
                f'x2="{WIDTH - RIGHT}" y2="{y(value):.1f}"><title>{escape(name)}: {escape(_num(value) + suffix)}</title></line>'
            )
    if not points:
        parts.append(
            f'<text class="chart-empty" x="{LEFT + plot_w / 2:.1f}" y="{TOP + plot_h / 2:.1f}" '
            'text-anchor="middle">no data in this window</text></svg>'
        )
        return "".join(parts)
    for i, j in _segments(ts):
        coords = " ".join(f"{x(ts[k]):.1f},{y(vs[k]):.1f}" for k in range(i, j))
        parts.append(f'<polyline class="chart-line" points="{coords}"/>')
    for t, v in zip(ts, vs, strict=True):
        stamp = datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M UTC")
        parts.append(
            f'<circle class="chart-point" cx="{x(t):.1f}" cy="{y(v):.1f}" r="3">'
            f"<title>{stamp}: {escape(f'{v:.1f}' + suffix)}</title></circle>"
        )
    parts.append("</svg>")
    return "".join(parts)
