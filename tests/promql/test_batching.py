"""mlinfra.promql.batching through LocalEngine.instant_many: a family of expressions that differ in
one label's value is answered by one grouped expression, with each member's own answer."""

from __future__ import annotations

import math

import pytest

from mlinfra.promql.batching import batches
from mlinfra.promql.engine import LocalEngine
from mlinfra.promql.interface import InstantSample, QueryError
from mlinfra.samples import Sample
from mlinfra.store import MetricsStore

T = 1_800_000_000.0
MODELS = [f"m{i}" for i in range(12)]


@pytest.fixture
def store(sqlite_store: MetricsStore) -> MetricsStore:
    samples = []
    for i, model in enumerate(MODELS):
        for gpu in ("0", "1", "2")[: 1 + i % 3]:
            for k in range(11):
                value = float("nan") if (i == 4 and k == 10) else 10.0 * i + k * (1 + int(gpu)) + 0.1
                samples.append(
                    Sample("util", {"model": model, "gpu": gpu, "host": f"h{i % 2}"}, value, T - 600 + 60 * k)
                )
        if i != 7:  # m7 has no request counter at all
            for k in range(11):
                counter = 100.0 * k if k < 6 or i % 2 else 5.0 * (k - 6)  # a reset for even models
                samples.append(Sample("req", {"model": model, "api": "predict"}, counter, T - 600 + 60 * k))
    samples.append(Sample("util", {"gpu": "0", "host": "h9"}, 99.0, T))  # no model label
    samples.append(
        Sample("util", {"model": "other", "gpu": "0", "host": "h0"}, 50.0, T)
    )  # outside the family
    sqlite_store.write_samples(samples)
    return sqlite_store


FAMILIES = [
    'avg(util{{model="{m}"}})',
    'sum(util{{model="{m}", host="h0"}})',
    'max(max_over_time(util{{model="{m}"}}[5m]))',
    'min(util{{model="{m}"}} offset 2m)',
    'count(util{{model="{m}", gpu!="0"}})',
    'sum(rate(req{{model="{m}"}}[5m]))',
    'sum(increase(req{{model="{m}", api=~"pre.*"}}[10m]))',
]


@pytest.mark.parametrize("template", FAMILIES)
def test_a_family_gets_the_answers_its_members_get_alone(store: MetricsStore, template: str) -> None:
    exprs = [template.format(m=m) for m in [*MODELS, "nobody"]]
    assert len(batches(exprs)) == len(exprs)  # the whole family is batched
    engine = LocalEngine(store)

    together = engine.instant_many(exprs, T)
    alone = [engine.instant(e, T) for e in exprs]

    assert _same(together, alone), (together, alone)
    assert together[-1] == []  # a member without series: the empty vector, as alone
    assert any(r for r in together)  # not every answer is empty


def test_answers_are_bit_for_bit_including_nan(store: MetricsStore) -> None:
    exprs = [f'sum(util{{model="{m}"}})' for m in MODELS]
    engine = LocalEngine(store)
    together, alone = engine.instant_many(exprs, T), [engine.instant(e, T) for e in exprs]
    assert math.isnan(together[4][0].value)  # type: ignore[index, union-attr]
    assert _same(together, alone)


def test_mixed_with_other_expressions_and_errors_in_place(store: MetricsStore) -> None:
    exprs = [f'avg(util{{model="{m}"}})' for m in MODELS]
    exprs[3:3] = ["util + on() util", "sum(util)", 'topk(1, util{model="m1"})', "not promql("]
    engine = LocalEngine(store)
    together = engine.instant_many(exprs, T)
    assert isinstance(together[3], QueryError)
    assert isinstance(together[6], QueryError)
    alone = []
    for e in exprs:
        try:
            alone.append(engine.instant(e, T))
        except QueryError as err:
            alone.append(err)
    assert _same(
        [r for r in together if not isinstance(r, QueryError)],
        [r for r in alone if not isinstance(r, QueryError)],
    )


def test_shapes_that_are_not_batched() -> None:
    def batched(template: str) -> int:
        return len(batches([template.format(m=m) for m in MODELS]))

    assert batched('sum by (gpu) (util{{model="{m}"}})') == 0  # already grouped
    assert batched('topk(1, util{{model="{m}"}})') == 0  # a parameter
    assert batched('sum(util{{model="{m}"}} @ 100)') == 0  # @ modifier
    assert batched('sum(util{{model="{m}", model!="x"}})') == 0  # the label matched twice
    assert batched('sum(util{{model=~"{m}"}})') == 0  # a regex does not name one group
    assert batched('sum(label_replace(util{{model="{m}"}}, "a", "b", "c", "d"))') == 0
    assert batched('sum(util{{model="{m}"}} * 2)') == 0
    assert len(batches([f'avg(util{{model="{m}"}})' for m in MODELS[:5]])) == 0  # too few to gain


def _same(a: list, b: list) -> bool:
    def key(result: object) -> object:
        if isinstance(result, list):
            return [
                (tuple(sorted(s.labels.items())), repr(s.value))
                for s in result
                if isinstance(s, InstantSample)
            ]
        return repr(result)

    return [key(x) for x in a] == [key(y) for y in b]
