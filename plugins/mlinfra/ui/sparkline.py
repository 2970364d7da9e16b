"""Inline SVG sparklines: a few hundred bytes per chart, no plotting library, no JavaScript.

    >>> svg = sparkline([(0, 10.0), (60, 55.0), (120, 40.0)], lo=0, hi=100, label="GPU utilization")
    >>> svg.startswith("<svg") and "polyline" in svg
    True

The y range is fixed per metric (``lo``/``hi``: 0-100 % for utilization) so that
two GPUs' charts compare at a glance; values outside it are clipped to the edge.
An optional ``threshold`` draws a dashed line (e.g. the temperature that alerts).
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

WIDTH = 180
HEIGHT = 36
PAD = 2.0


def sparkline(
    points: Sequence[Sequence[float]],
    *,
    lo: float | None = None,
    hi: float | None = None,
    start: float | None = None,
    end: float | None = None,
    threshold: float | None = None,
    label: str = "",
    css_class: str = "spark",
    width: int = WIDTH,
    height: int = HEIGHT,
) -> str:
    """An ``<svg>`` element drawing ``points`` (``[(t, value), ...]``, time-ordered).

    ``start``/``end`` fix the time axis (the page's window) so gaps show as gaps at
    the right place; they default to the first and last point.
    """
    title = f"<title>{escape(label)}</title>" if label else ""
    head = (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="{escape(css_class)}" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
        f'role="img" aria-label="{escape(label)}" preserveAspectRatio="none">{title}'
    )
    if not points:
        mid = height / 2
        return (
            f'{head}<line class="spark-empty" x1="0" y1="{mid}" x2="{width}" y2="{mid}"/>'
            f'<text x="{width / 2}" y="{mid - 3}" text-anchor="middle">no data</text></svg>'
        )
    ts = [float(p[0]) for p in points]
    vs = [float(p[1]) for p in points]
    t0 = ts[0] if start is None else start
    t1 = ts[-1] if end is None else end
    v0 = min(vs) if lo is None else lo
    v1 = max(vs) if hi is None else hi
    if v1 <= v0:
        v0, v1 = v0 - 1.0, v0 + 1.0
    span_t = (t1 - t0) or 1.0

    def x(t: float) -> float:
        return PAD + (width - 2 * PAD) * min(max((t - t0) / span_t, 0.0), 1.0)

    def y(v: float) -> float:
        return height - PAD - (height - 2 * PAD) * min(max((v - v0) / (v1 - v0), 0.0), 1.0)

    coords = " ".join(f"{x(t):.1f},{y(v):.1f}" for t, v in zip(ts, vs, strict=True))
    base = height - PAD
    area = f"{x(ts[0]):.1f},{base:.1f} {coords} {x(ts[-1]):.1f},{base:.1f}"
    parts = [head, f'<polygon class="spark-area" points="{area}"/>']
    if threshold is not None and v0 < threshold < v1:
        ty = y(threshold)
        parts.append(f'<line class="spark-threshold" x1="0" y1="{ty:.1f}" x2="{width}" y2="{ty:.1f}"/>')
    parts.append(f'<polyline class="spark-line" points="{coords}"/>')
    parts.append(f'<circle class="spark-dot" cx="{x(ts[-1]):.1f}" cy="{y(vs[-1]):.1f}" r="2.2"/>')
    parts.append("</svg>")
    return "".join(parts)
