"""Throwaway real servers for tests and benchmarks: PostgreSQL, Prometheus, Pushgateway, Alertmanager.

Each launcher is a context manager that starts the real binary on ``127.0.0.1``
with a free ephemeral port, in its own temporary directory, waits (bounded) until
the server answers, yields a small handle and stops the server on exit
(terminate, then kill) and deletes the directory::

    with pushgateway_server() as gw, prometheus_server(scrape_targets={"pushgateway": gw.url}) as prom:
        push_samples(samples, gateway=gw.url)
        wait_for_query(prom.url, "ml_cpu_usage_percent", lambda result: len(result) == 1)

    with postgres_server() as pg:
        engine = sqlalchemy.create_engine(pg.url)

A missing binary skips the test with one line naming the Debian package to
install (or fails it under ``MLINFRA_REQUIRE_INTEGRATION=1``, see
:mod:`tests.support.integration`). A server that is installed but does not come
up raises :class:`ServiceStartError` with the tail of its log.

Set ``MLINFRA_KEEP_SERVICE_DIRS=1`` to keep the temporary directories (configs,
data, ``server.log``) for a post-mortem.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from tests.support.integration import unavailable

START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0
LOG_TAIL_LINES = 40
# A port picked by free_port() can be taken by another process before the server
# binds it; the launchers retry with a fresh port this many times in all.
PORT_ATTEMPTS = 3


class ServiceStartError(RuntimeError):
    """An installed server did not become ready; the message holds its log tail."""


@dataclass(frozen=True)
class ServerHandle:
    """A running server: ``url`` is its HTTP base URL (no trailing slash)."""

    name: str
    url: str
    port: int
    workdir: Path
    log_path: Path
    pid: int

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        return _tail(self.log_path, lines)


@dataclass(frozen=True)
class PostgresServer:
    """A running throwaway PostgreSQL cluster.

    ``url`` is a SQLAlchemy URL (``postgresql+psycopg2://user:password@127.0.0.1:port/db``),
    ``dsn`` the libpq form of the same (``host=127.0.0.1 port=... dbname=... user=... password=...``).
    """

    url: str
    dsn: str
    port: int
    host: str
    user: str
    password: str
    database: str
    workdir: Path
    log_path: Path
    pid: int
    socket_dir: Path = field(repr=False)

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        return _tail(self.log_path, lines)


# --------------------------------------------------------------------------- helpers


def free_port() -> int:
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return f"(no log: {exc})"
    return "\n".join(text.splitlines()[-lines:])


def _find_binary(component: str, candidates: Sequence[str], apt_package: str) -> str:
    """Absolute path of the first candidate found, else skip (locally) / fail (CI) with one line."""
    for candidate in candidates:
        found = (
            candidate
            if os.path.isabs(candidate) and os.access(candidate, os.X_OK)
            else shutil.which(candidate)
        )
        if found:
            return found
    unavailable(
        component,
        f"none of {', '.join(candidates)} found; install it with: apt-get install {apt_package}",
    )
    raise AssertionError("unreachable")  # unavailable() always raises


@contextlib.contextmanager
def _workdir(prefix: str) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix=f"mlinfra-{prefix}-"))
    try:
        yield path
    finally:
        if os.environ.get("MLINFRA_KEEP_SERVICE_DIRS", "") in ("", "0"):
            shutil.rmtree(path, ignore_errors=True)


def _stop(proc: subprocess.Popen[bytes], stop_signal: int = signal.SIGTERM) -> None:
    """Signal the server's process group, wait, then kill what is left."""
    if proc.poll() is not None:
        return
    # Each server runs in its own session (start_new_session=True), so its
    # process group holds the server and its children (PostgreSQL backends).
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, stop_signal)
    try:
        proc.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=STOP_TIMEOUT_S)


def _http_ready(url: str) -> Callable[[], bool]:
    def check() -> bool:
        try:
            return httpx.get(url, timeout=1.0).status_code == 200
        except httpx.HTTPError:
            return False

    return check


def _wait_ready(
    name: str,
    proc: subprocess.Popen[bytes],
    ready: Callable[[], bool],
    log_path: Path,
    timeout: float,
) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise ServiceStartError(
                f"{name} exited with status {proc.returncode} before it was ready; "
                f"log tail ({log_path}):\n{_tail(log_path)}"
            )
        if ready():
            return
        if time.monotonic() >= deadline:
            raise ServiceStartError(
                f"{name} was not ready within {timeout:.0f} s; log tail ({log_path}):\n{_tail(log_path)}"
            )
        time.sleep(0.05)


def _port_clash(log_path: Path) -> bool:
    return "address already in use" in _tail(log_path, 200).lower()


@contextlib.contextmanager
def _serve_http(
    name: str,
    workdir: Path,
    build_cmd: Callable[[int], list[str]],
    ready_path: str,
    timeout: float,
) -> Iterator[ServerHandle]:
    """Start ``build_cmd(port)`` in ``workdir``, wait for ``ready_path`` to answer 200, stop on exit."""
    log_path = workdir / "server.log"
    for attempt in range(1, PORT_ATTEMPTS + 1):
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        with log_path.open("ab") as log:
            proc = subprocess.Popen(
                build_cmd(port),
                cwd=workdir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            _wait_ready(name, proc, _http_ready(url + ready_path), log_path, timeout)
        except ServiceStartError:
            _stop(proc)
            if attempt < PORT_ATTEMPTS and _port_clash(log_path):
                continue
            raise
        except BaseException:
            _stop(proc)
            raise
        try:
            yield ServerHandle(name, url, port, workdir, log_path, proc.pid)
        finally:
            _stop(proc)
        return


# --------------------------------------------------------------------------- Pushgateway


@contextlib.contextmanager
def pushgateway_server(*, timeout: float = START_TIMEOUT_S) -> Iterator[ServerHandle]:
    """A Pushgateway (Debian ``prometheus-pushgateway``) on a free loopback port, no persistence.

    >>> with pushgateway_server() as gw:  # doctest: +SKIP
    ...     httpx.get(f"{gw.url}/metrics")
    """
    binary = _find_binary(
        "Pushgateway", ["prometheus-pushgateway", "pushgateway"], apt_package="prometheus-pushgateway"
    )
    with _workdir("pushgateway") as workdir:

        def cmd(port: int) -> list[str]:
            return [
                binary,
                f"--web.listen-address=127.0.0.1:{port}",
                # Debian's default persists to /var/lib/prometheus: an empty value
                # disables persistence so parallel test servers share nothing.
                "--persistence.file=",
            ]

        with _serve_http("Pushgateway", workdir, cmd, "/-/ready", timeout) as handle:
            yield handle


# --------------------------------------------------------------------------- Prometheus


def _scrape_config(job: str, targets: str | Sequence[str], scrape_interval: str) -> dict[str, Any]:
    """One scrape job; targets are ``host:port`` or URLs (scheme and path are honoured)."""
    target_list = [targets] if isinstance(targets, str) else list(targets)
    schemes, paths, hosts = set(), set(), []
    for target in target_list:
        if "://" in target:
            parts = urlsplit(target)
            schemes.add(parts.scheme)
            paths.add(parts.path.rstrip("/") or "/metrics")
            hosts.append(parts.netloc)
        else:
            schemes.add("http")
            paths.add("/metrics")
            hosts.append(target)
    if len(schemes) > 1 or len(paths) > 1:
        raise ValueError(f"scrape job {job!r}: all targets must share one scheme and metrics path")
    return {
        "job_name": job,
        "scrape_interval": scrape_interval,
        "scheme": schemes.pop(),
        "metrics_path": paths.pop(),
        # Pushed samples carry their own job/instance (the push's grouping key);
        # honor_labels keeps them instead of the Pushgateway's own.
        "honor_labels": True,
        "static_configs": [{"targets": hosts}],
    }


@contextlib.contextmanager
def prometheus_server(
    scrape_targets: Mapping[str, str | Sequence[str]] | None = None,
    rule_files: Sequence[str | os.PathLike[str]] = (),
    scrape_interval: str = "1s",
    extra_config: Mapping[str, Any] | None = None,
    *,
    wait_for_scrape: bool = True,
    timeout: float = START_TIMEOUT_S,
) -> Iterator[ServerHandle]:
    """A Prometheus server (Debian ``prometheus``) scraping ``scrape_targets``.

    ``scrape_targets`` maps a job name to one target or a list (``"127.0.0.1:9091"``
    or a URL such as ``gw.url``); every job scrapes with ``honor_labels: true`` so
    a Pushgateway's pushed ``job``/``instance`` survive. ``rule_files`` are copied
    in as given; rules are evaluated every ``scrape_interval``. ``extra_config``
    keys are merged into the top level of ``prometheus.yml`` (``alerting``, ...).
    ``--web.enable-lifecycle`` (POST ``/-/reload``) and ``--web.enable-admin-api`` are on.

    With ``wait_for_scrape`` (the default) the server is yielded only once every
    target has been scraped at least once (up or down): Prometheus 2.x applies
    discovered targets on a fixed 5 s tick, so the first scrape comes ~5 s after
    start, and a session fixture had better pay that once than every first test.

    >>> with prometheus_server({"pushgateway": gw.url}) as prom:  # doctest: +SKIP
    ...     wait_for_query(prom.url, "up", lambda r: len(r) == 1)
    """
    import yaml

    binary = _find_binary("Prometheus", ["prometheus"], apt_package="prometheus")
    with _workdir("prometheus") as workdir:
        config: dict[str, Any] = {
            "global": {"scrape_interval": scrape_interval, "evaluation_interval": scrape_interval},
            "scrape_configs": [
                _scrape_config(job, targets, scrape_interval)
                for job, targets in (scrape_targets or {}).items()
            ],
        }
        if rule_files:
            config["rule_files"] = [str(Path(f).resolve()) for f in rule_files]
        config.update(extra_config or {})
        config_path = workdir / "prometheus.yml"
        config_path.write_text(yaml.safe_dump(config, sort_keys=False))

        def cmd(port: int) -> list[str]:
            return [
                binary,
                f"--config.file={config_path}",
                f"--storage.tsdb.path={workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--web.enable-lifecycle",
                "--web.enable-admin-api",
            ]

        with _serve_http("Prometheus", workdir, cmd, "/-/ready", timeout) as handle:
            expected = sum(len(job["static_configs"][0]["targets"]) for job in config["scrape_configs"])
            if wait_for_scrape and expected:
                _wait_first_scrape(handle, expected, timeout)
            yield handle


def _wait_first_scrape(prom: ServerHandle, expected: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout + 10  # + the 5 s target-update tick
    targets: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        try:
            targets = httpx.get(f"{prom.url}/api/v1/targets", timeout=2.0).json()["data"]["activeTargets"]
        except (httpx.HTTPError, json.JSONDecodeError, KeyError):
            targets = []
        if len(targets) >= expected and all(t.get("health") != "unknown" for t in targets):
            return
        time.sleep(0.1)
    raise ServiceStartError(
        f"Prometheus did not scrape its {expected} target(s) within {timeout + 10:.0f} s; "
        f"targets: {targets!r}; log tail ({prom.log_path}):\n{prom.log_tail()}"
    )


def wait_for_query(
    url: str,
    promql: str,
    predicate: Callable[[list[dict[str, Any]]], bool],
    timeout: float = 30.0,
    interval: float = 0.25,
) -> list[dict[str, Any]]:
    """Poll Prometheus's ``/api/v1/query`` until ``predicate(result)`` holds; return that result.

    ``result`` is the API's ``data.result`` list (``[{"metric": {...}, "value": [ts, "1.5"]}]``).
    Raises :class:`TimeoutError` with the last result (or error) after ``timeout`` seconds.

    >>> wait_for_query(prom.url, 'ml_cpu_usage_percent{job="mlinfra_sweep"}',  # doctest: +SKIP
    ...                lambda r: r and float(r[0]["value"][1]) == 42.0)
    """
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            response = httpx.get(f"{url}/api/v1/query", params={"query": promql}, timeout=5.0)
            body = response.json()
            if response.status_code == 200 and body.get("status") == "success":
                result: list[dict[str, Any]] = body["data"]["result"]
                if predicate(result):
                    return result
                last = result
            else:
                last = body
        except (httpx.HTTPError, json.JSONDecodeError) as exc:
            last = exc
        if time.monotonic() >= deadline:
            raise TimeoutError(
                f"query {promql!r} on {url} did not satisfy the predicate in {timeout} s; last: {last!r}"
            )
        time.sleep(interval)


# --------------------------------------------------------------------------- Alertmanager


@contextlib.contextmanager
def alertmanager_server(
    config: Mapping[str, Any] | None = None, *, timeout: float = START_TIMEOUT_S
) -> Iterator[ServerHandle]:
    """An Alertmanager (Debian ``prometheus-alertmanager``), clustering off.

    ``config`` replaces the default ``alertmanager.yml`` (one receiver ``default``
    that notifies nobody, short group waits so tests see alerts quickly).
    """
    import yaml

    binary = _find_binary(
        "Alertmanager", ["prometheus-alertmanager", "alertmanager"], apt_package="prometheus-alertmanager"
    )
    with _workdir("alertmanager") as workdir:
        effective = (
            dict(config)
            if config is not None
            else {
                "route": {
                    "receiver": "default",
                    "group_wait": "1s",
                    "group_interval": "1s",
                    "repeat_interval": "1h",
                },
                "receivers": [{"name": "default"}],
            }
        )
        config_path = workdir / "alertmanager.yml"
        config_path.write_text(yaml.safe_dump(effective, sort_keys=False))

        def cmd(port: int) -> list[str]:
            return [
                binary,
                f"--config.file={config_path}",
                f"--storage.path={workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                # Empty disables the gossip cluster (it would bind 0.0.0.0:9094).
                "--cluster.listen-address=",
            ]

        with _serve_http("Alertmanager", workdir, cmd, "/-/ready", timeout) as handle:
            yield handle


# --------------------------------------------------------------------------- PostgreSQL


def _postgres_bindir() -> Path:
    """The directory holding ``initdb`` and ``postgres``: $MLINFRA_PG_BINDIR, Debian's layout, PATH."""
    candidates: list[str] = []
    if os.environ.get("MLINFRA_PG_BINDIR"):
        candidates.append(os.path.join(os.environ["MLINFRA_PG_BINDIR"], "initdb"))

    def version(path: str) -> float:
        try:
            return float(Path(path).parts[-3])
        except (ValueError, IndexError):
            return 0.0

    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=version, reverse=True)
    candidates.append("initdb")
    initdb = _find_binary("PostgreSQL", candidates, apt_package="postgresql")
    return Path(initdb).resolve().parent


def _postgres_runas() -> dict[str, Any]:
    """Popen arguments that drop root to the ``postgres`` user (PostgreSQL refuses to run as root)."""
    if os.geteuid() != 0:
        return {}
    try:
        entry = pwd.getpwnam("postgres")
    except KeyError:
        unavailable(
            "PostgreSQL",
            "running as root and there is no 'postgres' user to run the server as; "
            "install it with: apt-get install postgresql",
        )
        raise AssertionError("unreachable") from None
    return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}


@contextlib.contextmanager
def postgres_server(
    *, database: str = "mlinfra", user: str = "mlinfra", timeout: float = START_TIMEOUT_S
) -> Iterator[PostgresServer]:
    """A throwaway PostgreSQL cluster (``initdb`` + ``postgres``) on a free loopback port.

    Password (SCRAM) auth on 127.0.0.1 with a random password, trust on its
    private unix socket; durability off (``fsync``, ``synchronous_commit``,
    ``full_page_writes``) because the data dies with the test.

    >>> with postgres_server() as pg:  # doctest: +SKIP
    ...     engine = sqlalchemy.create_engine(pg.url)
    """
    import psycopg2

    bindir = _postgres_bindir()
    runas = _postgres_runas()
    with _workdir("postgres") as workdir:
        if runas:
            os.chown(workdir, runas["user"], runas["group"])
        data_dir = workdir / "data"
        log_path = workdir / "server.log"
        password = secrets.token_urlsafe(16)
        pwfile = workdir / "pwfile"
        pwfile.write_text(password + "\n")
        pwfile.chmod(0o600)
        if runas:
            os.chown(pwfile, runas["user"], runas["group"])

        started = subprocess.run(
            [
                str(bindir / "initdb"),
                f"--pgdata={data_dir}",
                f"--username={user}",
                f"--pwfile={pwfile}",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",  # nothing needs to survive a crash of a throwaway cluster
                "--no-instructions",
            ],
            cwd=workdir,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            **runas,
        )
        pwfile.unlink()
        if started.returncode != 0:
            raise ServiceStartError(
                f"initdb failed with status {started.returncode}:\n{started.stdout}\n{started.stderr}"
            )

        for attempt in range(1, PORT_ATTEMPTS + 1):
            port = free_port()
            with log_path.open("ab") as log:
                if runas:
                    os.chown(log_path, runas["user"], runas["group"])
                proc = subprocess.Popen(
                    [
                        str(bindir / "postgres"),
                        "-D",
                        str(data_dir),
                        "-p",
                        str(port),
                        "-k",
                        str(workdir),
                        "-c",
                        "listen_addresses=127.0.0.1",
                        "-c",
                        "fsync=off",
                        "-c",
                        "synchronous_commit=off",
                        "-c",
                        "full_page_writes=off",
                    ],
                    cwd=workdir,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    **runas,
                )

            def ready(port: int = port) -> bool:
                try:
                    psycopg2.connect(
                        host="127.0.0.1",
                        port=port,
                        user=user,
                        password=password,
                        dbname="postgres",
                        connect_timeout=1,
                    ).close()
                except psycopg2.OperationalError:
                    return False
                return True

            try:
                _wait_ready("PostgreSQL", proc, ready, log_path, timeout)
            except ServiceStartError:
                _stop(proc, signal.SIGINT)
                if attempt < PORT_ATTEMPTS and _port_clash(log_path):
                    continue
                raise
            except BaseException:
                _stop(proc, signal.SIGINT)
                raise
            break

        try:
            admin = psycopg2.connect(
                host="127.0.0.1", port=port, user=user, password=password, dbname="postgres"
            )
            try:
                admin.autocommit = True  # CREATE DATABASE cannot run in a transaction
                with admin.cursor() as cur:
                    cur.execute(f'CREATE DATABASE "{database}"')
            finally:
                admin.close()
            yield PostgresServer(
                url=f"postgresql+psycopg2://{user}:{password}@127.0.0.1:{port}/{database}",
                dsn=f"host=127.0.0.1 port={port} dbname={database} user={user} password={password}",
                port=port,
                host="127.0.0.1",
                user=user,
                password=password,
                database=database,
                workdir=workdir,
                log_path=log_path,
                pid=proc.pid,
                socket_dir=workdir,
            )
        finally:
            # SIGINT is PostgreSQL's "fast" shutdown: it does not wait for clients
            # (a leaked SQLAlchemy pool) to disconnect the way SIGTERM ("smart") does.
            _stop(proc, signal.SIGINT)


# --------------------------------------------------------------------------- Redis


@dataclass(frozen=True)
class RedisServer:
    """A running throwaway Redis: ``url`` is a Celery/redis-py broker URL (``redis://:@127.0.0.1:port/0``)."""

    url: str
    port: int
    workdir: Path
    log_path: Path
    pid: int

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        return _tail(self.log_path, lines)


@contextlib.contextmanager
def redis_server(*, timeout: float = START_TIMEOUT_S) -> Iterator[RedisServer]:
    """A Redis server (Debian ``redis-server``) on a free loopback port, persistence off.

    >>> with redis_server() as redis:  # doctest: +SKIP
    ...     celery_env = {"AIRFLOW__CELERY__BROKER_URL": redis.url}
    """
    import redis as redis_py

    binary = _find_binary("Redis", ["redis-server"], apt_package="redis-server")
    with _workdir("redis") as workdir:
        log_path = workdir / "server.log"
        for attempt in range(1, PORT_ATTEMPTS + 1):
            port = free_port()
            with log_path.open("ab") as log:
                proc = subprocess.Popen(
                    [
                        binary,
                        "--bind",
                        "127.0.0.1",
                        "--port",
                        str(port),
                        "--dir",
                        str(workdir),
                        # The data dies with the test: no RDB snapshots, no append-only file.
                        "--save",
                        "",
                        "--appendonly",
                        "no",
                        "--protected-mode",
                        "yes",
                    ],
                    cwd=workdir,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )

            def ready(port: int = port) -> bool:
                try:
                    return bool(redis_py.Redis(host="127.0.0.1", port=port, socket_timeout=1).ping())
                except redis_py.RedisError:
                    return False

            try:
                _wait_ready("Redis", proc, ready, log_path, timeout)
            except ServiceStartError:
                _stop(proc)
                if attempt < PORT_ATTEMPTS and _port_clash(log_path):
                    continue
                raise
            except BaseException:
                _stop(proc)
                raise
            try:
                yield RedisServer(f"redis://:@127.0.0.1:{port}/0", port, workdir, log_path, proc.pid)
            finally:
                _stop(proc)
            return
