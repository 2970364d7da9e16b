"""A real Prometheus serving given history: OpenMetrics -> ``promtool tsdb create-blocks-from`` -> server.

The differential tests and the rules benchmark load the same series into the
metrics store and into Prometheus 2.42 and compare answers::

    history = [SeriesData("req_total", {"job": "api"}, [(1_700_000_000_000, 1.0), ...]), ...]
    with prometheus_with_history(history) as prom:
        httpx.get(f"{prom.url}/api/v1/query", params={"query": "rate(req_total[5m])", "time": "1700000300"})

Timestamps are integer milliseconds. OpenMetrics carries seconds as a float and
promtool truncates ``seconds * 1000`` to an integer, so :func:`openmetrics_ms`
tells what Prometheus will really store; :func:`openmetrics_text` only writes
timestamps that survive the trip unchanged (it raises otherwise).
"""

from __future__ import annotations

import contextlib
import math
import subprocess
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from tests.support.services import (
    START_TIMEOUT_S,
    ServerHandle,
    ServiceStartError,
    _find_binary,
    _serve_http,
    _workdir,
)

# Blocks are in the past; retention is counted from the newest block, so this only
# has to be longer than the history itself.
RETENTION = "100y"


@dataclass
class SeriesData:
    """One series' history: ``points`` are (timestamp ms, value), time-ordered."""

    name: str
    labels: Mapping[str, str] = field(default_factory=dict)
    points: list[tuple[int, float]] = field(default_factory=list)


def format_value(v: float) -> str:
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    return repr(float(v))


def format_ts(ms: int) -> str:
    return f"{ms // 1000}.{ms % 1000:03d}"


def openmetrics_ms(text: str) -> int:
    """The millisecond timestamp promtool stores for an OpenMetrics timestamp (Go: int64(f * 1000))."""
    return int(float(text) * 1000)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def write_openmetrics(series: Iterable[SeriesData], out: IO[str], *, eof: bool = True) -> int:
    """Write ``series`` as OpenMetrics text ending in ``# EOF``; returns the number of samples.

    With ``eof=False`` the terminating ``# EOF`` is left to the caller (streaming a
    large history in batches).

    Series of one metric name are written together (a metric family must not be
    interleaved) and without ``# TYPE`` lines, so names are stored exactly as given.
    """
    by_name: dict[str, list[SeriesData]] = {}
    for s in series:
        by_name.setdefault(s.name, []).append(s)
    n = 0
    for name, members in by_name.items():
        for s in members:
            labels = ",".join(f'{k}="{_escape(v)}"' for k, v in sorted(s.labels.items()))
            head = f"{name}{{{labels}}} " if labels else f"{name} "
            lines = []
            for ms, v in s.points:
                ts = format_ts(ms)
                if openmetrics_ms(ts) != ms:
                    raise ValueError(f"timestamp {ms} ms does not survive OpenMetrics seconds ({ts})")
                lines.append(f"{head}{format_value(v)} {ts}\n")
            out.writelines(lines)
            n += len(lines)
    if eof:
        out.write("# EOF\n")
    return n


def create_blocks(openmetrics_file: Path, data_dir: Path, *, timeout: float = 600.0) -> None:
    """``promtool tsdb create-blocks-from openmetrics FILE DATA_DIR``; raises with its output on failure."""
    promtool = _find_binary("promtool", ["promtool"], apt_package="prometheus")
    data_dir.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        [promtool, "tsdb", "create-blocks-from", "openmetrics", str(openmetrics_file), str(data_dir)],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if done.returncode != 0:
        raise ServiceStartError(
            f"promtool create-blocks-from failed with status {done.returncode}:\n"
            f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        )


@contextlib.contextmanager
def prometheus_with_history(
    series: Iterable[SeriesData] | None = None,
    *,
    openmetrics_file: Path | None = None,
    timeout: float = START_TIMEOUT_S,
    extra_args: Iterable[str] = (),
) -> Iterator[ServerHandle]:
    """A Prometheus 2.x (Debian ``prometheus``) whose TSDB holds ``series`` (or an OpenMetrics file).

    It scrapes nothing; query it at times inside the history (``/api/v1/query?time=``).
    """
    binary = _find_binary("Prometheus", ["prometheus"], apt_package="prometheus")
    with _workdir("prometheus-history") as workdir:
        if openmetrics_file is None:
            if series is None:
                raise ValueError("give series or openmetrics_file")
            openmetrics_file = workdir / "history.om.txt"
            with openmetrics_file.open("w") as f:
                write_openmetrics(series, f)
        data_dir = workdir / "data"
        create_blocks(openmetrics_file, data_dir)
        config = workdir / "prometheus.yml"
        config.write_text("global:\n  scrape_interval: 1m\nscrape_configs: []\n")
        extra = list(extra_args)

        def cmd(port: int) -> list[str]:
            return [
                binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={data_dir}",
                f"--storage.tsdb.retention.time={RETENTION}",
                f"--web.listen-address=127.0.0.1:{port}",
                *extra,
            ]

        with _serve_http("Prometheus", workdir, cmd, "/-/ready", timeout) as handle:
            yield handle
