"""The real-server benchmark counts the operator's requests from the apiserver's audit log (no server here:
a recorded log's shape)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_apiserver import USER, AuditLog


def _event(audit_id: str, verb: str, resource: str, stage: str = "ResponseComplete", subresource: str | None = None,
           user: str = USER) -> str:
    ref = {"resource": resource, **({"subresource": subresource} if subresource else {})}
    return json.dumps({"auditID": audit_id, "stage": stage, "verb": verb, "objectRef": ref,
                       "user": {"username": user}})


def test_audit_log_counts_each_operator_request_once_by_kind(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    lines = [_event("w", "watch", "deployments", "ResponseStarted"), _event("w", "watch", "deployments"),
             _event("l", "list", "pods"), _event("a", "patch", "deployments"),
             _event("s", "patch", "gemma4deployments", subresource="status"),
             _event("k", "patch", "gemma4deployments"), _event("e", "create", "events"),
             _event("d", "delete", "poddisruptionbudgets"), _event("x", "create", "pods", user="system:admin")]
    path.write_text("\n".join(lines[:5]))  # the fifth line is still being written
    audit = AuditLog(path)
    first = audit.count(0)
    assert (first.watches, first.reads, first.writes, first.applies) == (1, 1, 1, 1)
    with path.open("a") as f:
        f.write("\n" + "\n".join(lines[5:]) + "\n")
    counts = audit.count(0)
    assert (counts.reads, counts.watches, counts.writes) == (1, 1, 5)
    assert (counts.applies, counts.status, counts.kopf, counts.events, counts.deletes) == (1, 1, 1, 1, 1)
    assert audit.writes() == 5 and audit.count(3).requests == 4  # from the fourth request on
