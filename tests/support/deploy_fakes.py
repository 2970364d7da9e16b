"""In-memory stand-ins for the deploy operators' unit tests: the cluster behind
``ManifestClient`` and the ``mlinfra_deployments`` records.

They are patched in where the operators build them (``mlinfra.deploy.kube.ManifestClient``,
``DeploymentRecords.from_connection``), so the operators' own logic and the pure deploy
functions (``snapshot``, ``apply_objects``, ``rollback_plan``, ``execute_rollback``) run
for real. Both are as strict as what they stand for: the records refuse an unknown column
or outcome as ``DeploymentRecords`` does, and the client refuses kinds mlinfra does not deploy.
"""

from __future__ import annotations

import copy
import dataclasses
from datetime import UTC, datetime
from typing import Any

from mlinfra.deploy.records import OUTCOMES, DeploymentRecord

KINDS = ("ConfigMap", "Service", "Deployment")
COLUMNS = {f.name for f in dataclasses.fields(DeploymentRecord)} - {"run_id"}


class FakeCluster:
    """``ManifestClient``'s surface over a dict of live objects keyed by ``(kind, namespace, name)``."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.calls: list[tuple[str, str]] = []  # (verb, "Kind/name"), in order
        self.fail_on: dict[tuple[str, str], Exception] = {}  # (verb, "Kind/name") -> raised
        # "Kind/name" whose next apply the server stores but whose reply is lost (a reset connection).
        self.lost_replies: set[str] = set()
        self.generation = 5

    def _check(self, verb: str, kind: str, name: str) -> str:
        if kind not in KINDS:
            raise ValueError(f"mlinfra deploys ConfigMap, Service and Deployment objects, not {kind}")
        label = f"{kind}/{name}"
        self.calls.append((verb, label))
        error = self.fail_on.get((verb, label))
        if error is not None:
            raise error
        return label

    def put(self, obj: dict[str, Any]) -> None:
        """An object that is live before the test (as the API returns it, server fields included)."""
        meta = obj["metadata"]
        self.objects[(obj["kind"], meta["namespace"], meta["name"])] = copy.deepcopy(obj)

    def read(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        self._check("read", kind, name)
        live = self.objects.get((kind, namespace, name))
        return copy.deepcopy(live) if live is not None else None

    def apply(self, obj: dict[str, Any]) -> dict[str, Any]:
        meta = obj["metadata"]
        label = self._check("apply", obj["kind"], meta["name"])
        stored = copy.deepcopy(obj)
        stored["metadata"]["resourceVersion"] = str(len(self.calls))
        if obj["kind"] == "Deployment":
            self.generation += 1
            stored["metadata"]["generation"] = self.generation
        self.objects[(obj["kind"], meta["namespace"], meta["name"])] = stored
        if label in self.lost_replies:
            self.lost_replies.discard(label)
            raise ConnectionResetError(f"connection reset after applying {label}")
        return copy.deepcopy(stored)

    def delete(self, kind: str, namespace: str, name: str) -> bool:
        self._check("delete", kind, name)
        return self.objects.pop((kind, namespace, name), None) is not None

    def written(self) -> list[tuple[str, str]]:
        return [c for c in self.calls if c[0] != "read"]


class FakeRecords:
    """``DeploymentRecords``' get / update / finish over a dict; ``writes`` keeps every call."""

    def __init__(self) -> None:
        self.rows: dict[str, dict[str, Any]] = {}
        self.writes: list[tuple[str, str, dict[str, Any]]] = []  # (method, run_id, fields)

    def seed(self, run_id: str, **fields: Any) -> None:
        row: dict[str, Any] = dict.fromkeys(COLUMNS)
        row.update(model="half-plus-two", started_at=datetime(2026, 11, 20, 12, tzinfo=UTC))
        row.update(copy.deepcopy(fields))
        self.rows[run_id] = row

    def get(self, run_id: str) -> DeploymentRecord | None:
        row = self.rows.get(run_id)
        return DeploymentRecord(run_id=run_id, **copy.deepcopy(row)) if row is not None else None

    def update(self, run_id: str, **fields: Any) -> None:
        unknown = set(fields) - COLUMNS
        if unknown:
            raise ValueError(f"unknown column(s) {sorted(unknown)} of mlinfra_deployments")
        self.writes.append(("update", run_id, copy.deepcopy(fields)))
        if run_id in self.rows:  # an UPDATE of a missing row changes nothing
            self.rows[run_id].update(copy.deepcopy(fields))

    def finish(self, run_id: str, outcome: str, reason: str | None = None, **fields: Any) -> None:
        if outcome not in OUTCOMES:
            raise ValueError(f"outcome must be one of {OUTCOMES}, got {outcome!r}")
        self.writes.append(("finish", run_id, {"outcome": outcome, **copy.deepcopy(fields)}))
        if run_id in self.rows:
            self.rows[run_id].update(outcome=outcome, **copy.deepcopy(fields))
