"""Least privilege: the chart's RBAC against every API request the operator really makes.

The integration tests (tests/integration, kmock) record each distinct request of kopf and of the
operator's own client as (verb, group, resource, namespace) in tests/data/recorded-api-requests.json.
Here, with the chart rendered by helm:

- every recorded request is allowed by the ClusterRole of the default (cluster-wide, watch-mode)
  install, except the few that kopf or the operator make only in another mode (MODE_ONLY: namespaced
  mode), which the RBAC of that mode must allow instead;
- every permission any rendering grants was recorded, or is in UNRECORDED, a short list of what the
  integration tests cannot exercise, each with its reason;
- no wildcards, no Secrets, no privilege-escalation verbs, no non-resource URLs;
- namespaced mode (watchNamespaces) gives each namespace a Role with exactly the namespaced part
  of the cluster-wide rules, and keeps only cluster-scoped reads in its ClusterRole.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import re
from collections.abc import Iterable
from typing import Any

import pytest

from tests.packaging.chart import (
    NAMESPACE,
    ROOT,
    Manifest,
    is_endpoint_picker_role,
    of_kind,
    one,
    operator_cluster_role,
    operator_roles,
    workload,
)
from tests.packaging.conftest import VALUE_SETS, Renderer

RECORD = ROOT / "tests" / "data" / "recorded-api-requests.json"

Permission = tuple[str, str, str]  # (apiGroup, resource[/subresource], verb)

# Resources that are cluster-scoped: never in a namespaced Role.
CLUSTER_SCOPED = {
    ("", "nodes"),
    ("", "namespaces"),
    ("apiextensions.k8s.io", "customresourcedefinitions"),
    ("kopf.dev", "clusterkopfpeerings"),
}

# Recorded requests made only in a mode the default install does not use: (the value set that
# renders that mode, why). The default ClusterRole must not grant them.
MODE_ONLY: dict[Permission, tuple[str, str]] = {
    ("", "namespaces", verb): ("ha-namespaced", "kopf lists and watches namespaces only when it watches a "
                                                "subset of them (kopf _core/reactor/observation.py)")
    for verb in ("list", "watch")
}

# Granted although the integration tests never make the request: each entry says why.
_PEERING = ("HA only (ha.enabled): kopf reads its peering object and patches its keep-alive into it; "
            "the integration tests run the operator --standalone")
_ROUTING = ("routing.enabled only (--epp-cluster-role): recorded apart, under otherModes 'routing' (tests/integration/"
            "test_routing.py; checked by test_every_recorded_routing_request_is_granted_by_routing_only); deletes and "
            "the escalation check run in tests/e2e/test_routing.py with this chart's rules")
_ROUTING_KINDS = (("inference.networking.k8s.io", "inferencepools"), ("gateway.networking.k8s.io", "httproutes"),
                  ("", "configmaps"), ("", "serviceaccounts"), ("rbac.authorization.k8s.io", "rolebindings"))
UNRECORDED: dict[Permission, str] = {
    **{("kopf.dev", "clusterkopfpeerings", verb): _PEERING for verb in ("list", "watch", "patch")},
    **{("kopf.dev", "kopfpeerings", verb): _PEERING for verb in ("list", "watch", "patch")},
    **{(group, resource, verb): _ROUTING for group, resource in _ROUTING_KINDS
       for verb in ("get", "list", "watch", "create", "patch", "delete")},
    ("apps", "deployments", "delete"): _ROUTING,
    ("", "services", "delete"): _ROUTING,
    ("rbac.authorization.k8s.io", "clusterroles", "bind"): _ROUTING,
}
# The one escalation-class verb: `bind` on the endpoint picker's ClusterRole (by name), so that the operator can
# bind it without holding its verbs (the API server's RBAC escalation check).
def bind_rule(objects: list[Manifest]) -> dict[str, Any] | None:
    """The operator's `bind` rule as the chart must render it: on the picker's ClusterRole alone; None without it."""
    epp = [o["metadata"]["name"] for o in objects if o["kind"] == "ClusterRole" and is_endpoint_picker_role(o)]
    return {"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["clusterroles"], "verbs": ["bind"],
            "resourceNames": epp} if epp else None

# Paths every authenticated user may read (system:discovery, system:public-info-viewer).
DISCOVERY_PREFIXES = ("/api", "/apis", "/version", "/openapi", "/healthz", "/livez", "/readyz")
ALLOWED_VERBS = {"get", "list", "watch", "create", "patch", "update", "delete"}


@functools.cache
def _record() -> dict[str, Any]:
    if not RECORD.is_file():
        pytest.fail(
            f"{RECORD.relative_to(ROOT)} is missing. It is written by a full, passing run of the kmock "
            "integration tests (`.venv/bin/pytest tests/integration`), which record every API request the "
            "operator makes; the RBAC test compares the chart's ClusterRole with that record.")
    data: Any = json.loads(RECORD.read_text(encoding="utf-8"))
    record: dict[str, Any] = data if isinstance(data, dict) else {"requests": data}  # also a bare list
    requests = record.get("requests")
    assert isinstance(requests, list) and requests, f"{RECORD.name}: no requests recorded"
    for r in requests:
        assert {"verb", "group", "resource", "namespace"} <= set(r), f"{RECORD.name}: malformed entry {r}"
    return record


def recorded() -> set[Permission]:
    return {(r["group"], r["resource"], r["verb"]) for r in _record()["requests"]}


def grants(rules: Iterable[dict[str, Any]]) -> set[Permission]:
    return {(group, resource, verb)
            for rule in rules
            for group in rule.get("apiGroups", [])
            for resource in rule.get("resources", [])
            for verb in rule.get("verbs", [])}


def roles(objects: list[Manifest]) -> list[Manifest]:
    """The operator's roles (the tenants' aggregated gemma4-view/-edit are tested in test_tenant_policy_chart)."""
    return operator_roles(objects)


def all_grants(objects: list[Manifest]) -> set[Permission]:
    return {p for role in roles(objects) for p in grants(role["rules"])}


def _missing(needed: set[Permission], granted: set[Permission]) -> list[str]:
    return [f"{verb} {group or 'core'}/{resource}" for group, resource, verb in sorted(needed - granted)]


def test_every_recorded_request_is_allowed_by_the_cluster_role(renderer: Renderer) -> None:
    default = grants(operator_cluster_role(renderer.value_set("default"))["rules"])
    missing = _missing(recorded() - set(MODE_ONLY), default)
    assert not missing, f"the operator makes requests its ClusterRole forbids: {missing}"
    for permission, (value_set, why) in MODE_ONLY.items():
        assert permission in recorded(), f"{permission} is no longer recorded: remove it from MODE_ONLY"
        assert permission not in default, f"{permission}: granted by default although only {why}"
        assert permission in all_grants(renderer.value_set(value_set)), f"{value_set} forbids {permission} ({why})"


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_nothing_is_granted_beyond_the_record_and_the_documented_exceptions(value_set: str,
                                                                             renderer: Renderer) -> None:
    extra = all_grants(renderer.value_set(value_set)) - recorded() - set(UNRECORDED)
    assert not extra, f"{value_set}: granted but never requested (and not in UNRECORDED): {_missing(extra, set())}"


def test_the_exceptions_are_needed_and_not_recorded(renderer: Renderer) -> None:
    stale = set(UNRECORDED) & recorded()
    assert not stale, f"now recorded, remove from UNRECORDED: {sorted(stale)}"
    granted = set().union(*(all_grants(renderer.value_set(name)) for name in VALUE_SETS))
    unused = set(UNRECORDED) - granted
    assert not unused, f"granted by no rendering, remove from UNRECORDED: {sorted(unused)}"


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_no_wildcards_secrets_or_escalation(value_set: str, renderer: Renderer) -> None:
    objects = renderer.value_set(value_set)
    for role in roles(objects):
        where = f"{value_set}: {role['kind']} {role['metadata']['name']}"
        for rule in role["rules"]:
            if rule == bind_rule(objects):
                continue
            assert set(rule) <= {"apiGroups", "resources", "verbs"}, f"{where}: {rule}"  # no nonResourceURLs
            for key in ("apiGroups", "resources", "verbs"):
                assert not any("*" in value for value in rule[key]), f"{where}: wildcard in {key}: {rule}"
            assert not {"secrets", "secrets/status"} & set(rule["resources"]), f"{where}: Secrets: {rule}"
            assert set(rule["verbs"]) <= ALLOWED_VERBS, f"{where}: {rule['verbs']}"


def test_non_resource_urls_are_discovery_only() -> None:
    for url in _record().get("nonResourceURLs", []):
        assert url.startswith(DISCOVERY_PREFIXES), f"non-resource URL outside discovery: {url}"


def test_namespaced_mode_uses_roles(renderer: Renderer) -> None:
    clusterwide_rules = grants(operator_cluster_role(renderer.value_set("default"))["rules"])
    objects = renderer.value_set("ha-namespaced")
    namespaces = ["ml", "team-a"]
    cluster_role = operator_cluster_role(objects)
    cluster_grants = grants(cluster_role["rules"])
    assert {(g, r) for g, r, _ in cluster_grants} <= CLUSTER_SCOPED, "namespaced mode: only cluster-scoped reads"
    assert {(g, r, v) for g, r, v in cluster_grants if (g, r) != ("", "namespaces")} == {
        p for p in clusterwide_rules if (p[0], p[1]) in CLUSTER_SCOPED}
    namespaced_part = {p for p in clusterwide_rules if (p[0], p[1]) not in CLUSTER_SCOPED}
    peering = {("kopf.dev", "kopfpeerings", v) for v in ("list", "watch", "patch")}
    by_namespace = {r["metadata"]["namespace"]: grants(r["rules"]) for r in of_kind(objects, "Role")}
    assert sorted(by_namespace) == namespaces
    for namespace, granted in by_namespace.items():
        assert granted == namespaced_part | peering, namespace
        needed = {p for p in recorded() - set(MODE_ONLY) if (p[0], p[1].split("/")[0]) not in CLUSTER_SCOPED}
        assert not _missing(needed, granted), f"{namespace}: {_missing(needed, granted)}"
    for binding in of_kind(objects, "RoleBinding"):
        assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "g4op"}
    assert one(objects, "ClusterRoleBinding")["roleRef"]["name"] == cluster_role["metadata"]["name"]


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_bindings_name_the_operator_service_account(value_set: str, renderer: Renderer) -> None:
    objects = renderer.value_set(value_set)
    pod = workload(objects)["spec"]["template"]["spec"]
    role_names = {(r["kind"], r["metadata"].get("namespace"), r["metadata"]["name"]) for r in roles(objects)}
    for binding in of_kind(objects, "ClusterRoleBinding") + of_kind(objects, "RoleBinding"):
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": pod["serviceAccountName"], "namespace": NAMESPACE}]
        ref = binding["roleRef"]
        namespace = binding["metadata"].get("namespace") if ref["kind"] == "Role" else None
        assert (ref["kind"], namespace, ref["name"]) in role_names


def test_fixed_accelerators_need_no_node_access(renderer: Renderer) -> None:
    granted = grants(operator_cluster_role(renderer.value_set("ha-clusterwide"))["rules"])
    assert not {p for p in granted if p[:2] == ("", "nodes")}
    assert {("kopf.dev", "clusterkopfpeerings", v) for v in ("list", "watch", "patch")} <= granted


# ---------------------------------------------------------------------------------------------------------------
# the README's RBAC table against the rendered rules
# ---------------------------------------------------------------------------------------------------------------

README = ROOT / "README.md"
README_SECTION = ("**RBAC, least privilege.**", "**High availability.**")
README_COLUMNS = ["API group", "Resources", "Verbs", "Granted", "With `watchNamespaces`", "Why"]
# The "Granted" column: what a rule needs, as (watchNamespaces set, ha.enabled, routing.enabled).
GRANTED = {
    "always": (False, False, False),
    "`watchNamespaces`": (True, False, False),
    "`ha.enabled`": (False, True, False),
    "`ha.enabled` + `watchNamespaces`": (True, True, False),
    "`routing.enabled`": (False, False, True),
}
# The "With `watchNamespaces`" column: where the rule goes then ("—": not granted then).
PLACES = {"Role", "ClusterRole", "—"}
# (watchNamespaces set, ha.enabled, routing.enabled) -> helm arguments
_NAMESPACES = ("--set-json", 'watchNamespaces=["ml","team-a"]')
_HA = ("--set", "ha.enabled=true", "--set", "replicaCount=2")
_ROUTING_ON = ("--set", "routing.enabled=true")
RENDERINGS = {
    (False, False, False): (),
    (True, False, False): _NAMESPACES,
    (False, True, False): _HA,
    (True, True, False): _NAMESPACES + _HA,
    (False, False, True): _ROUTING_ON,
    (True, False, True): _NAMESPACES + _ROUTING_ON,
}


@dataclasses.dataclass(frozen=True)
class ReadmeRule:
    permissions: frozenset[Permission]
    granted: str
    place: str


def _readme_section() -> str:
    text = README.read_text(encoding="utf-8")
    start, end = text.index(README_SECTION[0]), text.index(README_SECTION[1])
    return text[start:end]


def _ticked(cell: str) -> list[str]:
    return re.findall(r"`([^`]+)`", cell)


def readme_rules() -> list[ReadmeRule]:
    """The rows of the README's RBAC table."""
    header, *rows = [line for line in _readme_section().splitlines() if line.startswith("| ")]
    cells = [[c.strip() for c in line.strip().strip("|").split("|")] for line in (header, *rows)]
    assert cells[0] == README_COLUMNS, f"README RBAC table columns: {cells[0]}"
    rules = []
    for group, resources, verbs, granted, place, why in cells[1:]:
        where = f"README RBAC row {group} {resources}"
        assert granted in GRANTED and place in PLACES and why, f"{where}: {granted!r} / {place!r} / {why!r}"
        api_group = "" if group == "core" else _ticked(group)[0]
        rules.append(ReadmeRule(frozenset((api_group, r, v) for r in _ticked(resources) for v in _ticked(verbs)),
                                granted, place))
    return rules


def documented(namespaced: bool, ha: bool, routing: bool = False) -> tuple[set[Permission], set[Permission]]:
    """What the README says the ClusterRole and (with watchNamespaces) each Role grant."""
    cluster: set[Permission] = set()
    role: set[Permission] = set()
    for rule in readme_rules():
        needs_namespaced, needs_ha, needs_routing = GRANTED[rule.granted]
        if (needs_namespaced and not namespaced) or (needs_ha and not ha) or (needs_routing and not routing) \
                or (namespaced and rule.place == "—"):
            continue
        (role if namespaced and rule.place == "Role" else cluster).update(rule.permissions)
    return cluster, role


@pytest.mark.parametrize(("namespaced", "ha", "routing"), list(RENDERINGS))
def test_the_readme_rbac_table_is_the_rendered_rules_verb_for_verb(namespaced: bool, ha: bool, routing: bool,
                                                                   renderer: Renderer) -> None:
    objects = renderer.objects(*RENDERINGS[(namespaced, ha, routing)])
    cluster, role = documented(namespaced, ha, routing)
    rendered = grants(operator_cluster_role(objects)["rules"])
    assert rendered == cluster, (f"ClusterRole: the README says {_missing(cluster - rendered, set())} too much and "
                                 f"misses {_missing(rendered - cluster, set())}")
    namespaced_roles = of_kind(objects, "Role")
    assert bool(namespaced_roles) == namespaced
    for r in namespaced_roles:
        granted = grants(r["rules"])
        assert granted == role, (f"Role in {r['metadata']['namespace']}: the README says "
                                 f"{_missing(role - granted, set())} too much and misses "
                                 f"{_missing(granted - role, set())}")


def test_the_readme_says_what_watch_namespaces_limits(renderer: Renderer) -> None:
    section = _readme_section()
    paragraph = next((p for p in section.split("\n\n") if p.startswith("**`watchNamespaces` limits**")), "")
    assert "`--namespace`" in paragraph and "Role" in paragraph, "README: say what watchNamespaces limits"
    pod = workload(renderer.objects(*RENDERINGS[(True, False, False)]))["spec"]["template"]["spec"]
    args = pod["containers"][0]["args"]
    assert {"--namespace=ml", "--namespace=team-a"} <= set(args)  # what the paragraph says the chart passes
    stays = {resource for _, resource, _ in documented(True, False)[0]}
    assert stays == {"nodes", "customresourcedefinitions", "namespaces"}, stays
    for words in ("nodes", "CRDs", "namespaces"):
        assert words in paragraph, f"the watchNamespaces paragraph does not name what stays cluster-wide: {words}"


def test_the_endpoint_picker_role_reads_only_and_the_operator_binds_it_by_name(renderer: Renderer) -> None:
    """routing.enabled: the chart ships the picker's ClusterRole (read-only) and the operator may bind that role
    alone; it holds none of the picker's rights on InferenceObjectives, and nothing about it without routing."""
    objects = renderer.value_set("routing")
    epp = [o for o in objects if o["kind"] == "ClusterRole" and is_endpoint_picker_role(o)]
    assert len(epp) == 1
    assert {verb for _, _, verb in grants(epp[0]["rules"])} == {"get", "list", "watch"}
    assert ("", "pods", "watch") in grants(epp[0]["rules"])
    operator_rules = operator_cluster_role(objects)["rules"]
    assert bind_rule(objects) in operator_rules
    assert not {p for p in grants(operator_rules) if p[0] == "inference.networking.x-k8s.io"}
    default = renderer.value_set("default")
    assert bind_rule(default) is None
    assert not [o for o in default if o["kind"] == "ClusterRole" and is_endpoint_picker_role(o)]
    args = workload(objects)["spec"]["template"]["spec"]["containers"][0]["args"]
    assert f"--epp-cluster-role={epp[0]['metadata']['name']}" in args


def test_every_recorded_routing_request_is_granted_by_routing_only(renderer: Renderer) -> None:
    modes = {m["mode"]: m for m in _record().get("otherModes") or []}
    assert "routing" in modes, "no routing requests recorded: run the whole integration tier (tests/integration)"
    needed = {(r["group"], r["resource"], r["verb"]) for r in modes["routing"]["requests"]}
    assert needed
    routing = grants(operator_cluster_role(renderer.value_set("routing"))["rules"])
    default = grants(operator_cluster_role(renderer.value_set("default"))["rules"])
    assert not _missing(needed, routing), f"routing mode makes requests its rules forbid: {_missing(needed, routing)}"
    assert not needed & default, f"granted without routing.enabled: {sorted(needed & default)}"
    assert needed <= set(UNRECORDED), f"not listed as routing-only: {sorted(needed - set(UNRECORDED))}"
