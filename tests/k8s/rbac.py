"""Check Kubernetes requests against ``include/k8s/rbac.yaml`` the way RBAC's authorizer would."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

RBAC_FILE = Path(__file__).resolve().parents[2] / "include" / "k8s" / "rbac.yaml"


def load_rbac(path: Path = RBAC_FILE) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d]


def role_rules(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [rule for d in docs if d["kind"] == "Role" for rule in d["rules"]]


def allowed(rules: list[dict[str, Any]], verb: str, group: str, resource: str, name: str = "") -> bool:
    """RBAC's rule matching; a rule with ``resourceNames`` only allows requests naming one of them."""
    return any(
        group in r.get("apiGroups", [])
        and resource in r.get("resources", [])
        and (verb in r.get("verbs", []) or "*" in r.get("verbs", []))
        and ("resourceNames" not in r or (bool(name) and name in r["resourceNames"]))
        for r in rules
    )


def uncovered(requests: Iterable[tuple[str, ...]], docs: list[dict[str, Any]] | None = None) -> list[str]:
    """Requests ``(verb, group, resource, namespace[, name])`` no Role of their namespace allows."""
    docs = docs if docs is not None else load_rbac()
    out = []
    for verb, group, resource, namespace, *rest in requests:
        name = rest[0] if rest else ""
        rules = [
            rule
            for d in docs
            if d["kind"] == "Role" and d["metadata"].get("namespace") == namespace
            for rule in d["rules"]
        ]
        if not namespace or not allowed(rules, verb, group, resource, name):
            what = f"{resource}/{name}" if name else resource
            out.append(f"{verb} {what} (group {group!r}) in {namespace or 'the cluster scope'}")
    return sorted(out)
