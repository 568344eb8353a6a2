"""Run the operator in-process (kopf as an asyncio task) against the kmock_plus Emulator.

Shared by the integration tests and the reconcile benchmark. The Emulator serves in the same
event loop; the operator's own client is synchronous and runs in threads, so nothing blocks it.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from typing import Any

import kmock
from kmock_plus import Emulator

from gemma4_operator.api import API_VERSION, GROUP, KIND, PLURAL, VERSION
from gemma4_operator.config import OperatorConfig
from gemma4_operator.controller.context import OperatorContext
from gemma4_operator.controller.kube import build_api_client
from gemma4_operator.controller.metrics import Metrics
from gemma4_operator.controller.runner import make_context, run_operator

G4D = f"{GROUP}/{VERSION}/{PLURAL}"
DEPLOYMENTS, SERVICES, PVCS, PDBS = "apps/v1/deployments", "v1/services", "v1/persistentvolumeclaims", \
    "policy/v1/poddisruptionbudgets"
PODS, NODES, EVENTS, JOBS = "v1/pods", "v1/nodes", "v1/events", "batch/v1/jobs"
NETWORK_POLICIES = "networking.k8s.io/v1/networkpolicies"
WRITE_METHODS = ("POST", "PUT", "PATCH", "DELETE")
OPERATOR_AGENTS = ("kopf/", "gemma4-operator/")

_ALL = {"list", "watch", "get", "create", "patch", "delete"}


def declare(k: Emulator) -> None:
    """Served resources; v1/namespaces, v1/events and CRDs are the discovery kopf needs to start."""
    ri = kmock.ResourceInfo
    k.resources[G4D] = ri(kind=KIND, singular="gemma4deployment", namespaced=True, verbs=_ALL,
                          subresources={"status", "scale"}, shortnames={"g4d"}, categories={"gemma4"})
    k.resources[DEPLOYMENTS] = ri(kind="Deployment", namespaced=True, verbs=_ALL, subresources={"status", "scale"})
    k.resources[SERVICES] = ri(kind="Service", namespaced=True, verbs=_ALL, subresources={"status"})
    k.resources[PVCS] = ri(kind="PersistentVolumeClaim", namespaced=True, verbs=_ALL, subresources={"status"})
    k.resources[PDBS] = ri(kind="PodDisruptionBudget", namespaced=True, verbs=_ALL, subresources={"status"})
    k.resources[JOBS] = ri(kind="Job", namespaced=True, verbs=_ALL, subresources={"status"})
    k.resources[PODS] = ri(kind="Pod", namespaced=True, verbs=_ALL, subresources={"status"})
    k.resources[NODES] = ri(kind="Node", namespaced=False, verbs=_ALL, subresources={"status"})
    k.resources[EVENTS] = ri(kind="Event", namespaced=True, verbs=_ALL)
    k.resources[NETWORK_POLICIES] = ri(kind="NetworkPolicy", namespaced=True, verbs=_ALL)
    k.resources["v1/namespaces"] = ri(kind="Namespace", namespaced=False, verbs={"list", "watch", "get"})
    k.resources["apiextensions.k8s.io/v1/customresourcedefinitions"] = ri(
        kind="CustomResourceDefinition", namespaced=False, verbs={"list", "watch", "get", "create"})


def g4d(name: str, namespace: str = "default", **spec: Any) -> dict[str, Any]:
    spec.setdefault("model", {"variant": "e4b"})
    return {"apiVersion": API_VERSION, "kind": KIND, "metadata": {"name": name, "namespace": namespace},
            "spec": spec}


def node(name: str, labels: Mapping[str, str]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": dict(labels)}}


async def create(k: Emulator, resource: str, obj: Mapping[str, Any]) -> dict[str, Any]:
    group_version, plural = resource.rsplit("/", 1)
    base = f"/api/{group_version}" if group_version == "v1" else f"/apis/{group_version}"
    namespace = (obj.get("metadata") or {}).get("namespace")
    url = f"{base}/namespaces/{namespace}/{plural}" if namespace else f"{base}/{plural}"
    response = await k.post(url, json=dict(obj))
    assert response.status in (200, 201), await response.text()
    created: dict[str, Any] = await response.json()
    return created


async def patch(k: Emulator, resource: str, namespace: str | None, name: str, body: Any,
                subresource: str | None = None) -> dict[str, Any]:
    group_version, plural = resource.rsplit("/", 1)
    base = f"/api/{group_version}" if group_version == "v1" else f"/apis/{group_version}"
    url = f"{base}/namespaces/{namespace}/{plural}/{name}" if namespace else f"{base}/{plural}/{name}"
    if subresource:
        url += f"/{subresource}"
    response = await k.patch(url, json=body, headers={"Content-Type": "application/merge-patch+json"})
    assert response.status == 200, await response.text()
    patched: dict[str, Any] = await response.json()
    return patched


async def delete(k: Emulator, resource: str, namespace: str | None, name: str) -> None:
    group_version, plural = resource.rsplit("/", 1)
    base = f"/api/{group_version}" if group_version == "v1" else f"/apis/{group_version}"
    url = f"{base}/namespaces/{namespace}/{plural}/{name}" if namespace else f"{base}/{plural}/{name}"
    response = await k.delete(url)
    assert response.status == 200, await response.text()


async def complete_download(k: Emulator, namespace: str, name: str) -> None:
    """What the Job controller writes when the download pod succeeded (kmock runs no controllers)."""
    await wait_for(lambda: obj(k, JOBS, namespace, f"{name}-download"), what=f"download Job of {name}")
    await patch(k, JOBS, namespace, f"{name}-download", {"status": {
        "succeeded": 1, "startTime": "2026-12-07T10:00:00Z", "completionTime": "2026-12-07T10:05:00Z",
        "conditions": [{"type": "Complete", "status": "True"}]}}, subresource="status")


def obj(k: Emulator, resource: str, namespace: str | None, name: str) -> dict[str, Any] | None:
    key = (kmock.resource(resource), namespace, name)
    if key not in k.objects or k.objects[key].deleted:
        return None
    return dict(k.objects[key].raw)


def objects(k: Emulator, resource: str) -> list[dict[str, Any]]:
    res = kmock.resource(resource)
    return [dict(o.raw) for (r, _, _), o in list(k.objects.items()) if r == res and not o.deleted]


async def wait_for(predicate: Callable[[], Any], timeout: float = 30.0, interval: float = 0.02,
                   what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(interval)


async def settle(k: Emulator, quiet: float = 0.5, timeout: float = 20.0) -> None:
    """Wait until the operator has made no request for `quiet` seconds."""
    deadline = time.monotonic() + timeout
    seen, last_change = len(operator_requests(k)), time.monotonic()
    while time.monotonic() < deadline:
        await asyncio.sleep(0.05)
        now = len(operator_requests(k))
        if now != seen:
            seen, last_change = now, time.monotonic()
        elif time.monotonic() - last_change >= quiet:
            return
    raise AssertionError("the operator never went quiet")


# -- recorded requests ----------------------------------------------------------------------


def is_operator(request: kmock.Request) -> bool:
    agent = str(request.headers.get("User-Agent", ""))
    return agent.startswith(OPERATOR_AGENTS)


def all_requests(k: Emulator) -> list[kmock.Request]:
    """Every request served, in order. kmock's public iteration (`list(k)`) re-runs its filter DSL
    over every recorded request on each call, which is quadratic in a benchmark: read the list."""
    return list(k._requests)


def operator_requests(k: Emulator) -> list[kmock.Request]:
    return [r for r in all_requests(k) if is_operator(r)]


def is_write(request: kmock.Request) -> bool:
    return request.method.value.upper() in WRITE_METHODS


def writes(k: Emulator, since: int = 0) -> list[kmock.Request]:
    return [r for r in operator_requests(k)[since:] if is_write(r)]


def describe(request: kmock.Request) -> str:
    return f"{request.method.value} {request.url.path_qs}"


def rbac_verb(request: kmock.Request) -> str:
    method = request.method.value.upper()
    if method == "GET":
        if request.params.get("watch") in ("true", "1"):
            return "watch"
        return "get" if request.name else "list"
    return {"POST": "create", "PUT": "update", "PATCH": "patch",
            "DELETE": "delete" if request.name else "deletecollection"}.get(method, method.lower())


def is_resource(request: kmock.Request) -> bool:
    """A request about a resource (not discovery, which kmock parses with an empty plural)."""
    return request.resource is not None and bool(request.resource.plural)


def rbac_record(request: kmock.Request) -> dict[str, str]:
    """(verb, group, resource[/subresource], namespace) of one request; non-resource URLs by path."""
    if not is_resource(request):
        return {"verb": request.method.value.lower(), "nonResourceURL": request.url.path}
    resource = str(request.resource.plural)
    if request.subresource:
        resource += f"/{request.subresource}"
    return {"verb": rbac_verb(request), "group": str(request.resource.group or ""), "resource": resource,
            "namespace": request.namespace or ""}


# -- the operator ---------------------------------------------------------------------------


class OperatorRun:
    """One operator in a thread with its own event loop; `async with OperatorRun(k) as op:`.

    A separate loop keeps kopf's shutdown from waiting on the Emulator's request tasks (kopf
    treats every task of its loop it did not start as a hung task and waits 5 s for it).
    """

    def __init__(self, k: Emulator, *, request_timeout: float = 5.0, **config: Any) -> None:
        self.k = k
        config.setdefault("standalone", True)
        self.config = OperatorConfig(server=str(k.url).rstrip("/"), metrics_port=0, health_port=0,
                                     request_timeout=request_timeout, **config)
        self.metrics = Metrics()
        self.ctx: OperatorContext | None = None
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def _main(self) -> None:
        assert self.ctx is not None
        try:
            asyncio.run(run_operator(self.ctx, stop_flag=self._stop, ready_flag=self._ready))
        except BaseException as e:
            self._error = e

    async def __aenter__(self) -> OperatorRun:
        self.ctx = make_context(self.config, api_client=build_api_client(self.config.server), metrics=self.metrics)
        self._thread = threading.Thread(target=self._main, name="operator", daemon=True)
        self._thread.start()
        await wait_for(lambda: self._ready.is_set() or not self._thread or not self._thread.is_alive(),
                       timeout=15, what="the operator to start")
        if self._error is not None:
            raise self._error
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._stop.set()
        assert self._thread is not None and self.ctx is not None
        await asyncio.to_thread(self._thread.join, 30)
        await asyncio.to_thread(self.ctx.kube.close)
        if self._error is not None and not isinstance(self._error, asyncio.CancelledError):
            raise self._error


@contextlib.asynccontextmanager
async def emulator() -> AsyncIterator[Emulator]:
    async with Emulator() as k, kmock.Server(k):
        declare(k)
        yield k


async def gather_limited(coros: Iterable[Awaitable[Any]], limit: int = 50) -> list[Any]:
    semaphore = asyncio.Semaphore(limit)

    async def run(c: Awaitable[Any]) -> Any:
        async with semaphore:
            return await c

    return await asyncio.gather(*(run(c) for c in coros))
