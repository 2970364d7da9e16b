"""Write one interval's report files through ``ObjectStoragePath`` and record it in the store.

(A store with a day of samples is needed: ``tests/reports/test_publish.py`` runs this.)

    >>> from airflow.sdk import ObjectStoragePath
    >>> result = publish_report(store, fleet, start, end, base=ObjectStoragePath("file:///srv/reports"))  # doctest: +SKIP
    >>> result["path"]  # doctest: +SKIP
    'file:///srv/reports/2026-11-20'

Layout: ``<base>/<YYYY-MM-DD>/report.{json,csv,html}``. Each file is written to a
hidden temporary name in the same folder and then moved over the final name, so
a reader sees either the previous complete file or the new complete one, never
half of one; ``report.json`` goes last and is the report's commit point.
Leftover temporary files of an attempt that died are removed first, and a corrupt
or partial earlier report is simply replaced. Only the interval's own folder is
touched.

Where ``base`` comes from (:func:`reports_base`): the Airflow Variable
``mlinfra_reports_base`` (any ``ObjectStoragePath`` URL such as
``s3://bucket/mlinfra/reports``, with the Variable ``mlinfra_reports_conn_id``
naming the connection for it), else the environment variable
``MLINFRA_REPORTS_BASE``, else ``file://$AIRFLOW_HOME/reports``.
"""

from __future__ import annotations

import logging
import os
import secrets
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlinfra.exceptions import ReportStorageError
from mlinfra.redaction import redact_url
from mlinfra.reports.aggregate import DEFAULT_STEP, build_report
from mlinfra.reports.records import upsert_report_record
from mlinfra.reports.render import render_all
from mlinfra.reports.report import Report, iso

if TYPE_CHECKING:
    from airflow.sdk import ObjectStoragePath

    from mlinfra.config import Fleet
    from mlinfra.store import MetricsStore

log = logging.getLogger(__name__)

BASE_VARIABLE = "mlinfra_reports_base"
CONN_ID_VARIABLE = "mlinfra_reports_conn_id"
BASE_ENV = "MLINFRA_REPORTS_BASE"
_TMP_PREFIX = ".tmp-"


def default_reports_base() -> str:
    home = os.environ.get("AIRFLOW_HOME") or os.path.expanduser("~/airflow")
    return Path(home, "reports").absolute().as_uri()


def reports_base(*, variable_get: Any = None) -> ObjectStoragePath:
    """The configured base folder (see the module docstring for the order of lookup).

    ``variable_get`` is ``Variable.get``-like (``(key, default) -> value``); the
    Task SDK's ``Variable.get`` is used when it is left out. Call it inside a task,
    never at DAG parse time.
    """
    from airflow.sdk import ObjectStoragePath

    if variable_get is None:
        from airflow.sdk import Variable

        variable_get = Variable.get
    url = variable_get(BASE_VARIABLE, None) or os.environ.get(BASE_ENV) or default_reports_base()
    conn_id = variable_get(CONN_ID_VARIABLE, None) or None
    return ObjectStoragePath(str(url).rstrip("/"), conn_id=conn_id)


def _write_atomically(folder: ObjectStoragePath, name: str, content: bytes) -> None:
    tmp = folder / f"{_TMP_PREFIX}{secrets.token_hex(6)}-{name}"
    tmp.write_bytes(content)
    try:
        # Same store: fsspec's move is a rename (atomic on a local or POSIX file
        # system); object stores replace an object whole on write.
        tmp.move(folder / name)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _clear_leftovers(folder: ObjectStoragePath) -> None:
    try:
        entries = list(folder.iterdir())
    except (FileNotFoundError, NotADirectoryError):
        # Object stores have no empty folders: a new interval's prefix does not exist until
        # its first file is written, and listing it fails instead of giving nothing.
        return
    for p in entries:
        if p.name.startswith(_TMP_PREFIX):
            log.info("removing %s left by an earlier attempt", p)
            p.unlink(missing_ok=True)


def write_report_files(
    report: Report, base: ObjectStoragePath, *, run_id: str | None = None
) -> ObjectStoragePath:
    """Render ``report`` into ``base/<folder>/``; returns the folder."""
    folder = base / report.folder_name
    folder.mkdir(parents=True, exist_ok=True)
    _clear_leftovers(folder)
    for name, content in render_all(report, run_id=run_id).items():
        _write_atomically(folder, name, content)
    return folder


def _storage_errors() -> tuple[type[BaseException], ...]:
    """What a failing file system raises: OSError, and botocore's own errors for S3 (not OSErrors)."""
    errors: list[type[BaseException]] = [OSError]
    try:
        from botocore.exceptions import BotoCoreError, ClientError
    except ImportError:  # no Amazon provider installed: no S3 either
        return tuple(errors)
    return (*errors, BotoCoreError, ClientError)


def publish_report(
    store: MetricsStore,
    fleet: Fleet,
    start: float | datetime,
    end: float | datetime,
    *,
    base: ObjectStoragePath,
    run_id: str | None = None,
    step: float = DEFAULT_STEP,
) -> dict[str, Any]:
    """Build, write and record the report of ``[start, end)``; returns the stored summary plus ``path``."""
    report = build_report(store, fleet, start, end, step=step)
    try:
        folder = write_report_files(report, base, run_id=run_id)
    except _storage_errors() as e:
        # Nothing is recorded before the files are complete, so the retry simply rewrites them.
        raise ReportStorageError(
            f"report {report.folder_name}: cannot write to {redact_url(str(base))}: {type(e).__name__}: {e}"
        ) from e
    summary = report.summary()
    upsert_report_record(store, report.start, report.end, str(folder), summary, run_id=run_id)
    log.info(
        "report %s (data interval [%s, %s)) by run %s: %s (%d of %d sweeps) -> %s",
        report.folder_name,
        iso(report.start),
        iso(report.end),
        run_id,
        report.status,
        report.completeness.sweeps_found,
        report.completeness.sweeps_expected,
        folder,
    )
    return {
        **summary,
        "path": str(folder),
        "day": report.folder_name,
        "data_interval": [iso(report.start), iso(report.end)],
    }


def report_run_note(result: dict[str, Any], run_id: str | None = None) -> str:
    """The note a report run leaves on its DAG run: which day, which interval, how complete.

    A run is named after its logical date, the *end* of the day it reports, so the note
    says the day plainly (README, "Reports").

    >>> print(report_run_note({"day": "2026-11-29", "status": "complete", "sweeps_found": 288,
    ...     "sweeps_expected": 288, "data_interval": ["2026-11-29T00:00:00Z", "2026-11-30T00:00:00Z"],
    ...     "path": "file:///r/2026-11-29"}, "scheduled__2026-11-30T00:00:00+00:00"))
    Report of **2026-11-29**: complete (288 of 288 sweeps).
    Data interval [2026-11-29T00:00:00Z, 2026-11-30T00:00:00Z); run scheduled__2026-11-30T00:00:00+00:00 is named after the interval's end.
    Files: file:///r/2026-11-29
    """
    start, end = result.get("data_interval") or ["?", "?"]
    lines = [
        f"Report of **{result.get('day')}**: {result.get('status')} "
        f"({result.get('sweeps_found')} of {result.get('sweeps_expected')} sweeps).",
        f"Data interval [{start}, {end})"
        + (f"; run {run_id} is named after the interval's end." if run_id else "."),
        f"Files: {result.get('path')}",
    ]
    return "\n".join(lines)
