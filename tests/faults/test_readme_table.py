"""The README's "Failure behaviour" table is the fault matrix, rendered: they cannot drift."""

from __future__ import annotations

from pathlib import Path

from tests.faults.matrix import CELLS, FAULTS, README_BEGIN, README_END, SCENARIOS, render_table

README = Path(__file__).resolve().parents[2] / "README.md"


def test_the_readme_table_is_the_rendered_matrix() -> None:
    text = README.read_text(encoding="utf-8")
    assert README_BEGIN in text, "run: python -m tests.faults.matrix"
    assert README_END in text, "run: python -m tests.faults.matrix"
    inside = text.split(README_BEGIN, 1)[1].split(README_END, 1)[0]
    assert inside.strip() == render_table().strip(), (
        "README's Failure behaviour table is stale: replace it with `python -m tests.faults.matrix`"
    )


def test_every_scenario_states_every_fault() -> None:
    for s in SCENARIOS:
        assert set(s.expect) == set(FAULTS), s.key
    assert len({c.id for c in CELLS}) == len(CELLS) == len(SCENARIOS) * len(FAULTS)
