"""The one data type every collector returns and the store keeps.

A :class:`Sample` is Prometheus's data model: a metric name, a label set, a float
value and (optionally) a timestamp. Collectors leave ``timestamp`` as ``None``;
the sweep stamps every sample with the DAG run's logical time when it writes them.

>>> s = Sample("ml_gpu_utilization_percent", {"gpu_id": "0"}, 87.0)
>>> s.series_key
('ml_gpu_utilization_percent', (('gpu_id', '0'),))
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

# Prometheus's staleness marker (model/value/value.go, ``StaleNaN``): a NaN with its own bit
# pattern, written when a series that the previous scrape had is missing from this one.
# Queries never return it as a value: an instant selector whose latest sample is one returns
# nothing for that series, and range vectors leave it out
# (prometheus.io/docs/prometheus/latest/querying/basics/#staleness).
STALE_NAN_BITS = 0x7FF0000000000002
STALE_NAN: float = struct.unpack("<d", struct.pack("<Q", STALE_NAN_BITS))[0]
_STALE_BYTES = struct.pack("<d", STALE_NAN)


def is_stale_nan(value: float) -> bool:
    """Whether ``value`` is the staleness marker (``value.IsStaleNaN``), not just any NaN.

    >>> is_stale_nan(STALE_NAN), is_stale_nan(float("nan")), is_stale_nan(1.0)
    (True, False, False)
    """
    return value != value and struct.pack("<d", value) == _STALE_BYTES


def canonical_labels(labels: Mapping[str, str]) -> str:
    """Labels as canonical JSON (sorted keys, compact): the store's series key."""
    return json.dumps(dict(sorted(labels.items())), separators=(",", ":"), ensure_ascii=False)


@dataclass(frozen=True, slots=True)
class Sample:
    name: str
    labels: Mapping[str, str] = field(default_factory=dict)
    value: float = 0.0
    timestamp: float | None = None  # seconds since the epoch; None = "the sweep's time"

    def __post_init__(self) -> None:
        # Label values are strings in Prometheus; coerce once here so that every
        # collector can pass ints (gpu index, pid) without thinking about it.
        object.__setattr__(self, "labels", {str(k): str(v) for k, v in self.labels.items()})
        object.__setattr__(self, "value", float(self.value))

    @property
    def series_key(self) -> tuple[str, tuple[tuple[str, str], ...]]:
        return self.name, tuple(sorted(self.labels.items()))

    def to_json(self) -> list[Any]:
        return [self.name, dict(self.labels), self.value, self.timestamp]

    @staticmethod
    def of(name: str, labels: Mapping[str, str], value: float) -> Sample:
        """A sample whose labels are already strings and whose value is a float: no coercion, no copy.

        For collectors that build thousands of samples per sweep (the GPU collector's
        labels are strings by construction); ``Sample(...)`` is the safe default. The
        ``labels`` mapping is kept as given, so several samples may share one: the
        caller must not change it afterwards (nothing changes a sample's labels in place).

        >>> Sample.of("up", {"job": "gpu"}, 1.0) == Sample("up", {"job": "gpu"}, 1)
        True
        """
        # The slots' own setters: what a frozen dataclass's __init__ does, minus the
        # name look-up of object.__setattr__ and __post_init__'s copy (half the time).
        sample = _new_sample(Sample)
        _set_name(sample, name)
        _set_labels(sample, labels)
        _set_value(sample, value)
        _set_timestamp(sample, None)
        return sample

    @classmethod
    def from_json(cls, row: list[Any]) -> Sample:
        name, labels, value, ts = row
        return cls(name, labels, value, ts)


# Sample.of's parts: the class's slot descriptors (member_descriptor.__set__).
_new_sample = object.__new__
_set_name = vars(Sample)["name"].__set__
_set_labels = vars(Sample)["labels"].__set__
_set_value = vars(Sample)["value"].__set__
_set_timestamp = vars(Sample)["timestamp"].__set__


def dumps_samples(samples: Iterable[Sample]) -> str:
    """Serialize samples compactly (used to stage a collector's output for the sweep)."""
    # NaN/Inf are legal sample values (Prometheus has them); json allows them by default.
    return json.dumps([s.to_json() for s in samples], separators=(",", ":"))


def loads_samples(payload: str) -> list[Sample]:
    return [Sample.from_json(row) for row in json.loads(payload)]
