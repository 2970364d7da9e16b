"""Inline SVG time charts: axes and time labels, hover values, named thresholds, gaps, escaping."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

from mlinfra.ui.chart import BOTTOM, HEIGHT, LEFT, RIGHT, TOP, WIDTH, time_chart

NS = "{http://www.w3.org/2000/svg}"
T0 = 1_800_000_000.0  # 2027-01-15 08:00 UTC


def lines(svg: str) -> list[list[tuple[float, float]]]:
    return [
        [tuple(map(float, p.split(","))) for p in m.group(1).split()]  # type: ignore[misc]
        for m in re.finditer(r'class="chart-line" points="([^"]+)"', svg)
    ]


def texts(svg: str, css: str) -> list[str]:
    root = ET.fromstring(svg)
    return [t.text or "" for t in root.iter(f"{NS}text") if t.get("class") == css]


def test_values_map_onto_the_fixed_range_and_the_window() -> None:
    svg = time_chart([(T0, 0.0), (T0 + 300, 50.0), (T0 + 600, 100.0)], lo=0, hi=100, start=T0, end=T0 + 1200)
    (((x0, y0), (x1, y1), (x2, y2)),) = lines(svg)
    assert (x0, y0) == (LEFT, HEIGHT - BOTTOM)  # window start, value lo: bottom left of the plot
    assert y2 == TOP
    # 10 minutes of data in a 20-minute window fill half the width: the window is honest.
    assert x2 == round(LEFT + (WIDTH - LEFT - RIGHT) * 0.5, 1)
    assert y1 == round((y0 + y2) / 2, 1)


def test_axes_have_value_and_time_labels() -> None:
    svg = time_chart([(T0, 20.0)], lo=0, hi=100, unit="%", start=T0, end=T0 + 6 * 3600)
    assert texts(svg, "chart-axis") == ["0 %", "50 %", "100 %", "08:00", "11:00", "14:00 UTC"]
    # A window over 36 h names the day too.
    long = time_chart([(T0, 1.0)], lo=0, hi=2, start=T0, end=T0 + 3 * 86400)
    assert texts(long, "chart-axis")[-1] == "01-18 08:00 UTC"


def test_every_point_shows_its_time_and_value_on_hover() -> None:
    svg = time_chart([(T0, 42.0), (T0 + 300, 43.5)], lo=0, hi=100, unit="°C")
    titles = [c.find(f"{NS}title").text for c in ET.fromstring(svg).iter(f"{NS}circle")]  # type: ignore[union-attr]
    assert titles == ["2027-01-15 08:00 UTC: 42.0 °C", "2027-01-15 08:05 UTC: 43.5 °C"]


def test_values_outside_the_range_are_clipped_and_thresholds_are_named() -> None:
    svg = time_chart(
        [(T0, -50.0), (T0 + 1, 500.0)], lo=0, hi=100, thresholds=[(95, "GPUSaturated"), (500, "Off")]
    )
    (((_, y_low), (_, y_high)),) = lines(svg)
    assert (y_low, y_high) == (HEIGHT - BOTTOM, TOP)
    assert re.findall(r'data-threshold="([^"]+)"', svg) == ["GPUSaturated"]  # 500 is outside the range


def test_a_gap_of_several_sweeps_breaks_the_line() -> None:
    pts = [(T0 + i * 300, 10.0) for i in range(4)] + [(T0 + 3 * 3600 + i * 300, 10.0) for i in range(3)]
    assert [len(segment) for segment in lines(time_chart(pts, lo=0, hi=100))] == [4, 3]


def test_no_points_is_a_labelled_empty_chart_and_text_is_escaped() -> None:
    svg = time_chart([], label='GPU <0> "hot"')
    root = ET.fromstring(svg)
    assert root.get("aria-label") == 'GPU <0> "hot"'
    assert texts(svg, "chart-empty") == ["no data in this window"]
    assert "<0>" not in svg
