"""The growth plot (docs/growth.svg) is written by hand, without matplotlib: its points must sit
where their sizes and ratios say, on log scales, with the axes and lines named."""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET

from bench.growth_bench import growth_svg

SVG = "{http://www.w3.org/2000/svg}"


def _parse(text: str) -> ET.Element:
    return ET.fromstring(text)  # noqa: S314 - our own output, not untrusted input


def _points(root: ET.Element, name: str) -> list[tuple[float, float]]:
    (line,) = [p for p in root.iter(f"{SVG}polyline") if p.get("data-name") == name]
    return [tuple(map(float, pair.split(","))) for pair in line.get("points").split()]


def _texts(root: ET.Element, css_class: str) -> list[str]:
    return [t.text for t in root.iter(f"{SVG}text") if t.get("class") == css_class]


def test_points_are_placed_left_to_right_by_size_and_upwards_by_ratio():
    root = _parse(growth_svg({"journal": {1: 1.0, 10: 9.5, 100: 98.0}}))

    (x1, y1), (x10, y10), (x100, y100) = _points(root, "journal")
    assert x1 < x10 < x100
    assert y1 > y10 > y100  # SVG's y grows downwards: a higher ratio is drawn higher
    # Log scale on x: 1 → 10 spans the same width as 10 → 100.
    assert math.isclose(x10 - x1, x100 - x10, rel_tol=1e-3)
    # Log scale on y: a ratio of 9.5 is nearly one decade above 1, 98 nearly two.
    assert math.isclose((y1 - y100) / (y1 - y10), math.log10(98) / math.log10(9.5), rel_tol=1e-2)


def test_points_given_out_of_order_are_drawn_in_size_order():
    root = _parse(growth_svg({"upload": {100: 1.2, 1: 1.0, 10: 1.1}}))

    xs = [x for x, _ in _points(root, "upload")]
    assert xs == sorted(xs)


def test_a_flat_operation_stays_on_the_flat_reference_line():
    root = _parse(growth_svg({"evaluation": {1: 1.0, 10: 1.0, 100: 1.0}}))

    flat = next(r for r in root.iter(f"{SVG}line") if r.get("data-name") == "flat")
    ys = {y for _, y in _points(root, "evaluation")}
    assert ys == {float(flat.get("y1"))} == {float(flat.get("y2"))}


def test_axes_legend_and_title_are_labelled():
    text = growth_svg(
        {"worklist": {1: 1.0, 10: 1.3}, "readings table + indexes": {1: 1.0, 10: 10.1}},
        title="Cost at N x the demo cohort",
    )
    root = _parse(text)

    assert _texts(root, "x-tick") == ["1×", "10×", "100×"]  # the x axis always shows 1/10/100
    assert "1×" in _texts(root, "y-tick") and "100×" in _texts(root, "y-tick")
    legend = _texts(root, "legend")
    assert legend[0].startswith("worklist") and legend[1].startswith("readings table + indexes")
    assert "(10× at 10×)" in legend[1]
    assert root.find(f"{SVG}title").text == "Cost at N x the demo cohort"
    assert "cohort size" in text and "cost ÷ cost at 1×" in text


def test_labels_are_escaped_and_unusable_ratios_are_left_out():
    root = _parse(growth_svg({"a <b> & c": {1: 1.0, 10: 0.0, 100: float("nan")}}))

    assert len(_points(root, "a <b> & c")) == 1
