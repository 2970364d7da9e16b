"""/mlinfra/metrics' exposition: every family with HELP and TYPE, readable by Prometheus's parser."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from mlinfra.collectors.host import collect_host_samples
from mlinfra.metric_families import FAMILIES, describe, typed_exposition
from mlinfra.samples import Sample


def parse(samples: list[Sample]) -> tuple[str, dict[str, object]]:
    text = typed_exposition(samples).decode()
    return text, {f.name: f for f in text_string_to_metric_families(text)}


def test_every_family_of_a_real_host_sweep_is_described_and_typed() -> None:
    samples = collect_host_samples(host="h") + [
        Sample("ml_cpu_usage_percent", {"host": "h", "core": "all"}, 4.0)
    ]
    text, families = parse(samples)

    assert text.count("# HELP ") == text.count("# TYPE ") == len(families) > 5
    assert "untyped" not in text
    assert families["ml_cpu_seconds"].type == "counter"  # the parser names counters without _total
    assert families["ml_cpu_usage_percent"].type == "gauge"
    assert families["ml_network_receive_bytes"].type == "counter"
    assert all("exported by mlinfra" not in f.documentation for f in families.values())


def test_histogram_parts_become_one_family_and_unknown_names_get_a_type_from_their_shape() -> None:
    samples = [
        Sample(":tensorflow:serving:request_latency_bucket", {"le": "10"}, 1),
        Sample(":tensorflow:serving:request_latency_bucket", {"le": "+Inf"}, 2),
        Sample(":tensorflow:serving:request_latency_sum", {}, 12),
        Sample(":tensorflow:serving:request_latency_count", {}, 2),
        Sample("job:requests:rate5m", {}, 3.5),
        Sample("some_events_total", {}, 7),
    ]
    text, families = parse(samples)
    assert families[":tensorflow:serving:request_latency"].type == "histogram"
    assert len(families[":tensorflow:serving:request_latency"].samples) == 4
    assert families["job:requests:rate5m"].type == "gauge"
    assert families["some_events"].type == "counter"
    assert (
        describe("job:requests:rate5m")[1]
        == "job:requests:rate5m from a recording rule or an unknown source."
    )


def test_a_counter_without_total_stays_untyped_rather_than_renamed() -> None:
    # prometheus_client would write "TYPE x_total counter" for a sample named x: a mismatch.
    text, families = parse([Sample(":tensorflow:serving:request_count", {"status": "OK"}, 3)])
    assert "# TYPE :tensorflow:serving:request_count untyped" in text
    assert families[":tensorflow:serving:request_count"].samples[0].value == 3
    assert FAMILIES[":tensorflow:serving:request_count"][0] == "unknown"
