"""Inline SVG sparklines: coordinates, fixed ranges, clipping, gaps, escaping."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

from mlinfra.ui.sparkline import HEIGHT, PAD, WIDTH, sparkline

NS = "{http://www.w3.org/2000/svg}"


def points_of(svg: str) -> list[tuple[float, float]]:
    line = re.search(r'class="spark-line" points="([^"]+)"', svg)
    assert line
    return [tuple(map(float, p.split(","))) for p in line.group(1).split()]  # type: ignore[misc]


def test_values_map_onto_the_fixed_range_and_the_time_window() -> None:
    svg = sparkline([(100, 0.0), (150, 50.0), (200, 100.0)], lo=0, hi=100, start=100, end=300)
    (x0, y0), (x1, y1), (x2, y2) = points_of(svg)
    assert (x0, y0) == (PAD, HEIGHT - PAD)  # time start, value lo: bottom left
    assert y2 == PAD  # value hi: top
    assert x2 == round(PAD + (WIDTH - 2 * PAD) * 0.5, 1)  # t=200 is half of [100, 300]
    assert y1 == round((y0 + y2) / 2, 1)


def test_values_outside_the_range_are_clipped_to_the_edges() -> None:
    (_, y_low), (_, y_high) = points_of(sparkline([(0, -50.0), (1, 500.0)], lo=0, hi=100))
    assert y_low == HEIGHT - PAD
    assert y_high == PAD


def test_a_flat_series_still_draws_and_a_threshold_line_appears_inside_the_range() -> None:
    svg = sparkline([(0, 5.0), (1, 5.0)], threshold=5.5)
    assert len(points_of(svg)) == 2
    assert "spark-threshold" in svg
    assert "spark-threshold" not in sparkline([(0, 5.0), (1, 6.0)], lo=0, hi=10, threshold=50)


def test_no_points_is_a_labelled_empty_chart_and_text_is_escaped() -> None:
    svg = sparkline([], label='GPU <0> "hot"')
    root = ET.fromstring(svg)
    assert root.tag == f"{NS}svg"
    assert root.find(f"{NS}text").text == "no data"  # type: ignore[union-attr]
    assert root.get("aria-label") == 'GPU <0> "hot"'
    assert "<0>" not in svg
