"""Backtesting alerting rules over stored history: when would they have fired?

Prometheus cannot do this (prometheus#1154: ``promtool`` backfills recording rules
only); mlinfra evaluates at logical times over a store it owns, so it can::

    result = backtest(load_rules(["new.yaml"], engine=engine).groups, engine,
                      start=t1, end=t2, step=300)
    for ep in result.episodes:     # one per time an alert went pending (and maybe fired)
        print(ep.alertname, ep.labels, ep.pending_from, ep.firing_from, ep.resolved_at)

    diff = compare(old_result, result)   # "would have fired 3 fewer times: these"

The rules run at ``start, start + step, ... <= end`` with the real state machine
(``for``, ``keep_firing_for``) in memory: nothing is written, not the alert state,
not recording rules' output, not ``ALERTS`` (a rule reading a recorded series or
``ALERTS`` sees what is stored). On the local engine the rules' expressions are
evaluated as a range (``LocalEngine.range_session``): each selector is read once for
every few hours of the window, and each step slices those reads, with results
bit-identical to evaluating the steps one by one; other engines get one evaluation
session per step, shared by every rule of every group.
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TextIO

from mlinfra.rules.evaluate import evaluate_groups
from mlinfra.rules.state import MemoryAlertStates

if TYPE_CHECKING:
    from mlinfra.promql.interface import QueryEngine
    from mlinfra.rules.files import RuleGroup

MAX_STEPS = 100_000


class _BacktestStates(MemoryAlertStates):
    """In-memory states for steps evaluated once each, in order: saving is an append, not a merge."""

    def save(
        self,
        file: str,
        group: str,
        ts: float,
        states: Mapping[str, Any],
        transitions: Sequence[Any],
        **_: Any,
    ) -> None:
        self.snapshots[(file, group)] = {ts: dict(states)}
        self.transitions.extend((file, group, t) for t in transitions)


@dataclass
class Episode:
    """One alert's stretch of activity: pending from, firing from (if it got there), resolved at."""

    alertname: str
    labels: dict[str, str]
    group: str
    pending_from: float
    pending_value: float
    firing_from: float | None = None
    firing_value: float | None = None
    resolved_at: float | None = None  # resolved, or dropped while pending
    resolved_value: float | None = None

    @property
    def fired(self) -> bool:
        return self.firing_from is not None

    def key(self) -> tuple[str, tuple[tuple[str, str], ...], float | None]:
        return self.alertname, tuple(sorted(self.labels.items())), self.firing_from


@dataclass
class BacktestResult:
    """Every episode of every alert over the window, in order of start."""

    start: float
    end: float
    step: float
    evaluations: int
    episodes: list[Episode] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def fired(self) -> list[Episode]:
        return [e for e in self.episodes if e.fired]

    def to_json(self) -> dict[str, Any]:
        return {
            "start": self.start,
            "end": self.end,
            "step": self.step,
            "evaluations": self.evaluations,
            "episodes": [asdict(e) for e in self.episodes],
            "errors": self.errors,
        }


def evaluation_times(start: float, end: float, step: float) -> list[float]:
    """``start, start + step, ... <= end``; refuses a window of more than MAX_STEPS steps."""
    if step <= 0:
        raise ValueError(f"step must be > 0 seconds, got {step}")
    if end < start:
        raise ValueError(f"the window ends ({end}) before it starts ({start})")
    n = int((end - start) // step) + 1
    if n > MAX_STEPS:
        raise ValueError(f"{n} evaluations (more than {MAX_STEPS}): use a larger --step or a shorter window")
    return [start + i * step for i in range(n)]


def backtest(
    groups: Sequence[RuleGroup],
    engine: QueryEngine,
    *,
    start: float,
    end: float,
    step: float,
    external_labels: Mapping[str, str] | None = None,
    external_url: str = "",
) -> BacktestResult:
    """Evaluate ``groups`` at every step of ``[start, end]``; see the module docstring."""
    times = evaluation_times(start, end, step)
    states = _BacktestStates()
    result = BacktestResult(start, end, step, len(times))
    seen_errors: set[str] = set()
    with contextlib.ExitStack() as stack:
        ranged = getattr(engine, "range_session", None)
        if callable(ranged):
            # One read of each selector per chunk of the window, not one per step: nothing
            # is written during a backtest, so every step may slice the same reads.
            exprs = [rule.expr for group in groups for rule in group.rules]
            engine = stack.enter_context(ranged(exprs, start=start, end=end))
        for t in times:
            evaluated = evaluate_groups(
                groups,
                engine,
                at=t,
                states=states,
                external_labels=external_labels,
                external_url=external_url,
            )
            for e in evaluated.errors:
                if str(e) not in seen_errors:  # a broken rule fails at every step: report it once
                    seen_errors.add(str(e))
                    result.errors.append(f"at {_iso(t)}: {e}")
    result.episodes = _episodes(states)
    return result


def _episodes(states: MemoryAlertStates) -> list[Episode]:
    open_: dict[tuple[str, str], Episode] = {}
    done: list[Episode] = []
    for _file, group, tr in sorted(states.transitions, key=lambda x: x[2].ts):
        key = (group, tr.fingerprint)
        if tr.from_state in ("inactive", "resolved") and tr.to_state in ("pending", "firing"):
            if key in open_:
                done.append(open_.pop(key))
            labels = {k: v for k, v in tr.labels.items() if k != "alertname"}
            open_[key] = Episode(tr.alertname, labels, group, tr.ts, tr.value)
        episode = open_.get(key)
        if episode is None:
            continue
        if tr.to_state == "firing":
            episode.firing_from, episode.firing_value = tr.ts, tr.value
        elif tr.to_state in ("resolved", "inactive"):
            episode.resolved_at, episode.resolved_value = tr.ts, tr.value
            done.append(open_.pop(key))
    done.extend(open_.values())
    return sorted(done, key=lambda e: (e.pending_from, e.alertname, sorted(e.labels.items())))


@dataclass
class Comparison:
    """How a new rule set's firing differs from an old one's over the same window."""

    only_old: list[Episode]
    only_new: list[Episode]
    both: int

    @property
    def delta(self) -> int:
        return len(self.only_new) - len(self.only_old)

    def summary(self) -> str:
        if self.delta < 0:
            change = f"would have fired {-self.delta} fewer time{'s' if self.delta != -1 else ''}"
        elif self.delta > 0:
            change = f"would have fired {self.delta} more time{'s' if self.delta != 1 else ''}"
        else:
            change = "would have fired as many times"
        return f"this change {change} ({self.both} unchanged, {len(self.only_old)} gone, {len(self.only_new)} new)"


def compare(old: BacktestResult, new: BacktestResult) -> Comparison:
    """Firing episodes only in ``old``, only in ``new``, and how many both have (same alert, labels, start)."""
    old_keys = {e.key(): e for e in old.fired}
    new_keys = {e.key(): e for e in new.fired}
    return Comparison(
        only_old=[e for k, e in old_keys.items() if k not in new_keys],
        only_new=[e for k, e in new_keys.items() if k not in old_keys],
        both=len(old_keys.keys() & new_keys.keys()),
    )


# ---------------------------------------------------------------------- printing


def _iso(t: float | None) -> str:
    if t is None:
        return "-"
    return datetime.fromtimestamp(t, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _fmt_labels(labels: Mapping[str, str]) -> str:
    return "{" + ", ".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}"


def _value(v: float | None) -> str:
    return "-" if v is None else f"{v:g}"


def print_timeline(result: BacktestResult, out: TextIO, *, title: str = "") -> None:
    """The episodes as a table: alert, labels, pending from, firing from, resolved at, values."""
    head = f"{title}: " if title else ""
    out.write(
        f"{head}{result.evaluations} evaluations from {_iso(result.start)} to {_iso(result.end)} "
        f"every {result.step:g}s: {len(result.episodes)} alert episodes, {len(result.fired)} fired\n"
    )
    rows = [
        ("ALERT", "LABELS", "PENDING FROM", "FIRING FROM", "RESOLVED AT", "VALUES (pending/firing/resolved)")
    ]
    for e in result.episodes:
        values = "/".join(_value(v) for v in (e.pending_value, e.firing_value, e.resolved_value))
        rows.append(
            (
                e.alertname,
                _fmt_labels(e.labels),
                _iso(e.pending_from),
                _iso(e.firing_from),
                _iso(e.resolved_at),
                values,
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        out.write("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() + "\n")
    for err in result.errors:
        out.write(f"error {err}\n")


def print_comparison(diff: Comparison, out: TextIO) -> None:
    out.write(diff.summary() + "\n")
    for sign, episodes in (("-", diff.only_old), ("+", diff.only_new)):
        for e in episodes:
            out.write(f"{sign} {e.alertname} {_fmt_labels(e.labels)} firing from {_iso(e.firing_from)}\n")


def comparison_json(old: BacktestResult, new: BacktestResult, diff: Comparison) -> str:
    return json.dumps(
        {
            "old": old.to_json(),
            "new": new.to_json(),
            "delta": diff.delta,
            "only_old": [asdict(e) for e in diff.only_old],
            "only_new": [asdict(e) for e in diff.only_new],
            "unchanged": diff.both,
        },
        indent=2,
    )


def backtest_files(
    files: Sequence[str],
    engine: QueryEngine,
    *,
    start: float,
    end: float,
    step: float,
    compare_with: Sequence[str] | None = None,
    as_json: bool = False,
    out: TextIO | None = None,
) -> int:
    """``mlinfra rules backtest``: load the files (a bad one raises), run, print; 1 if a rule failed."""
    from mlinfra.rules.files import load_rule_file

    out = out if out is not None else sys.stdout
    groups = [g for f in files for g in load_rule_file(f, engine=engine)]
    new = backtest(groups, engine, start=start, end=end, step=step)
    if compare_with:
        old_groups = [g for f in compare_with for g in load_rule_file(f, engine=engine)]
        old = backtest(old_groups, engine, start=start, end=end, step=step)
        diff = compare(old, new)
        if as_json:
            out.write(comparison_json(old, new, diff) + "\n")
        else:
            print_timeline(old, out, title="old")
            print_timeline(new, out, title="new")
            print_comparison(diff, out)
        return 1 if old.errors or new.errors else 0
    if as_json:
        out.write(json.dumps(new.to_json(), indent=2) + "\n")
    else:
        print_timeline(new, out)
    return 1 if new.errors else 0
