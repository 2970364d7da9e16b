"""PromQL: the query-engine interface and the local engine, with Prometheus 2.42's semantics.

Modules, each depending only on those above it (``mlinfra.rules`` builds on this
package, never the reverse; tests/test_layering.py keeps it so):

* :mod:`~mlinfra.promql.interface`: :class:`QueryEngine`, results and errors;
* :mod:`~mlinfra.promql.gonum`: Go's float maths, ``strconv.ParseFloat`` (``le``), value printing;
* :mod:`~mlinfra.promql.quantile`: ``histogram_quantile`` over buckets (engine and reports);
* :mod:`~mlinfra.promql.parse`: glue around ``promql-parser`` (syntax, selectors);
* :mod:`~mlinfra.promql.storage`: the reads of series and samples from the metrics store;
* :mod:`~mlinfra.promql.functions` and :mod:`~mlinfra.promql.plan`: the plan nodes;
* :mod:`~mlinfra.promql.compile`: syntax tree -> plan, refusing what is unsupported;
* :mod:`~mlinfra.promql.engine`: :class:`LocalEngine`, the plans run over the store.

Importing this package imports nothing else, so ``mlinfra.promql.gonum`` stays light.
"""
