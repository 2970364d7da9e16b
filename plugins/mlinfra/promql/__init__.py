"""PromQL: the query-engine interface and the local engine, with Prometheus 2.42's semantics.

Modules, each depending only on those above it (``mlinfra.rules`` builds on this
package, never the reverse; tests/test_layering.py keeps it so):

* :mod:`~mlinfra.promql.interface`: :class:`QueryEngine`, results and errors;
* :mod:`~mlinfra.promql.gonum`: Go's float maths, ``strconv.ParseFloat`` (``le``), value printing;
* :mod:`~mlinfra.promql.goport`, :mod:`~mlinfra.promql.gomath`, :mod:`~mlinfra.promql.gotime`:
  Go's ``math`` functions ported to the bit, and its calendar (the date functions);
* :mod:`~mlinfra.promql.quantile`: ``histogram_quantile`` over buckets (engine and reports);
* :mod:`~mlinfra.promql.parse`: glue around ``promql-parser`` (syntax, selectors, ``@``, regexes);
* :mod:`~mlinfra.promql.storage`: the reads of series and samples from the metrics store;
* the plan nodes: :mod:`~mlinfra.promql.functions` (range functions),
  :mod:`~mlinfra.promql.plan` (selectors, subqueries, range functions),
  :mod:`~mlinfra.promql.functions_instant`, :mod:`~mlinfra.promql.aggregations`,
  :mod:`~mlinfra.promql.binary`;
* :mod:`~mlinfra.promql.compile` and :mod:`~mlinfra.promql.compile_calls`: syntax tree -> plan,
  refusing what Prometheus 2.42 does not have;
* :mod:`~mlinfra.promql.engine`: :class:`LocalEngine`, the plans run over the store.

Importing this package imports nothing else, so ``mlinfra.promql.gonum`` stays light.
"""
