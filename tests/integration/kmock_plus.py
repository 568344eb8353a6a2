"""kmock 0.8 Emulator plus a hand-written stand-in for server-side apply (not real SSA: the e2e tier covers it)."""

# What the subclass adds to kmock.KubernetesEmulator (it uses kmock internals: pin kmock==0.8):
# - create: namespace from the URL (else namespaced watches drop the event), uid, creationTimestamp,
#   generation 1, resourceVersion; every change gets a new, increasing resourceVersion;
# - patch: real no-ops (nothing changes) emit no event and keep the resourceVersion; generation
#   grows when spec changes; PATCH .../status only touches status;
# - server-side apply (PATCH with Content-Type application/apply-patch+yaml): create-or-merge,
#   fields the same manager applied before and omits now are removed, lists are replaced,
#   managedFields records the manager;
# - list returns the latest resourceVersion; watch from a resourceVersion replays only later
#   events (no duplicate ADDED replay), and a watch without one starts with ADDED for every object;
# - equality labelSelectors (a=b,c=d) on list and watch;
# - cluster-scoped /api/v1/namespaces URLs parse (kmock 0.8 answers them with a 500);
# - resource requests are served by this class directly (kmock's DSL dispatch is quadratic in the
#   number of recorded requests), so kmock DSL reactions only apply to non-resource URLs;
# - fault injection: `emulator.faults.append(Fault(...))` answers matching requests with an
#   error status, or delays them (a client-side timeout) before serving them normally.

from __future__ import annotations

import asyncio
import collections
import copy
import dataclasses
import datetime
import itertools
import json
import time
import uuid
from collections.abc import Iterator, Mapping
from typing import Any

import aiohttp.web
import kmock
import yaml
from kmock._internal import aiobus, dicts, parsing, rendering

APPLY_PATCH = "application/apply-patch+yaml"
_LOG_LIMIT = 50_000

# kmock 0.8 cannot parse the cluster-scoped namespace URLs (/api/v1/namespaces[/NAME]): it takes
# "namespaces" for the namespace prefix and fails with a 500, which a namespaced kopf operator hits
# when it lists namespaces.
_parse_path = parsing.parse_path


def _parse_namespaces_too(path: str) -> parsing.ParsedPath:
    parts = path.strip("/").split("/")
    if parts[:3] == ["api", "v1", "namespaces"] and len(parts) <= 4:
        return parsing.ParsedPath("", "v1", "namespaces", None, parts[3] if len(parts) == 4 else None)
    return _parse_path(path)


parsing.parse_path = _parse_namespaces_too


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _status(code: int, reason: str, message: str, headers: Mapping[str, str] | None = None) -> aiohttp.web.Response:
    body = {"apiVersion": "v1", "kind": "Status", "metadata": {}, "status": "Failure", "code": code,
            "reason": reason, "message": message}
    return aiohttp.web.json_response(body, status=code, headers=dict(headers or {}))


def _selector_matches(selector: str, labels: Mapping[str, str]) -> bool:
    for term in filter(None, (t.strip() for t in selector.split(","))):
        if "!=" in term:
            key, value = term.split("!=", 1)
            if labels.get(key.strip()) == value.strip():
                return False
        elif "=" in term:
            key, value = term.replace("==", "=").split("=", 1)
            if labels.get(key.strip()) != value.strip():
                return False
        elif term.startswith("!"):
            if term[1:] in labels:
                return False
        elif term not in labels:
            return False
    return True


def _without_volatile(obj: Mapping[str, Any]) -> dict[str, Any]:
    meta = {k: v for k, v in (obj.get("metadata") or {}).items() if k not in ("resourceVersion", "managedFields")}
    return {**obj, "metadata": meta}


def _merge(base: Any, applied: Any) -> Any:
    """Dicts merge recursively; anything else (lists, scalars) is replaced."""
    if isinstance(base, dict) and isinstance(applied, dict):
        out = dict(base)
        for k, v in applied.items():
            out[k] = _merge(base.get(k), v) if k in base else copy.deepcopy(v)
        return out
    return copy.deepcopy(applied)


def _remove_dropped(obj: dict[str, Any], before: Mapping[str, Any], now: Mapping[str, Any]) -> None:
    """Remove fields the manager applied before but no longer applies (it was their only owner)."""
    for k, v in before.items():
        if k not in now:
            obj.pop(k, None)
        elif isinstance(v, dict) and isinstance(now[k], dict) and isinstance(obj.get(k), dict):
            _remove_dropped(obj[k], v, now[k])


@dataclasses.dataclass
class Fault:
    """Answer the next `times` matching requests with `status` (or delay them by `delay` seconds)."""

    method: str
    plural: str | None = None
    status: int = 0
    delay: float = 0.0
    times: int = 1
    content_type: str | None = None  # e.g. APPLY_PATCH to hit only server-side applies
    subresource: str | None = None
    retry_after: int | None = None
    hits: int = 0
    hit_at: list[float] = dataclasses.field(default_factory=list)  # time.monotonic() of each hit

    def matches(self, request: rendering.Request) -> bool:
        if self.times <= 0 or request.method.value.upper() != self.method.upper():
            return False
        if self.plural is not None and (request.resource is None or request.resource.plural != self.plural):
            return False
        if self.subresource != request.subresource:
            return False
        ctype = str(request.headers.get("Content-Type", ""))
        return self.content_type is None or ctype.startswith(self.content_type)


class _LoggedBus(aiobus.Bus[Any]):
    """The emulator's event bus, remembering each event with its resourceVersion for replays."""

    def __init__(self, owner: Emulator) -> None:
        super().__init__()
        self.owner = owner
        self.log: collections.deque[tuple[int, dict[str, Any]]] = collections.deque(maxlen=_LOG_LIMIT)

    async def put(self, *items: Any) -> None:
        stamped = []
        for event in items:
            obj = event.get("object") or {}
            rv = str((obj.get("metadata") or {}).get("resourceVersion", ""))
            if rv in self.owner.fresh:
                self.owner.fresh.discard(rv)
            else:  # kmock's own events (deletions) reuse the last version: give them a new one
                rv = self.owner.next_rv()
                self.owner.fresh.discard(rv)
                obj = {**obj, "metadata": {**(obj.get("metadata") or {}), "resourceVersion": rv}}
                event = {**event, "object": obj}
            self.log.append((int(rv), event))
            stamped.append(event)
        await super().put(*stamped)


class Emulator(kmock.KubernetesEmulator):
    faults: list[Fault]
    fresh: set[str]

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        self._buses = collections.defaultdict(lambda: _LoggedBus(self))
        self._rv_counter = itertools.count(1)
        self._last_rv = 0
        self.fresh = set()  # versions assigned to stored objects whose event is not out yet
        self.faults = []
        self._applied: dict[tuple[Any, str], tuple[str, dict[str, Any]]] = {}
        self._declared: set[Any] = set()

    # -- versions ------------------------------------------------------------------------

    def next_rv(self) -> str:
        self._last_rv = next(self._rv_counter)
        rv = str(self._last_rv)
        self.fresh.add(rv)
        return rv

    def _stamp_new(self, request: rendering.Request, obj: dict[str, Any]) -> None:
        md = obj.setdefault("metadata", {})
        if not md.get("name") and md.get("generateName"):
            md["name"] = md["generateName"] + uuid.uuid4().hex[:5]
        if request.namespace:
            md.setdefault("namespace", request.namespace)
        md.setdefault("uid", str(uuid.uuid4()))
        md.setdefault("creationTimestamp", _now())
        md.setdefault("generation", 1)
        md["resourceVersion"] = self.next_rv()

    # -- request dispatch ----------------------------------------------------------------

    async def _handle(self, request: rendering.Request) -> aiohttp.web.StreamResponse:
        for fault in self.faults:
            if fault.matches(request):
                fault.times -= 1
                fault.hits += 1
                fault.hit_at.append(time.monotonic())
                if fault.delay:
                    await asyncio.sleep(fault.delay)
                if fault.status:
                    headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else {}
                    return _status(fault.status, "Injected", f"injected HTTP {fault.status}", headers)
                break
        # Resource requests are served here directly: kmock's own dispatch matches each request
        # against its DSL views by re-scanning every request recorded so far, which is quadratic
        # and dominates a benchmark with thousands of requests. (kmock DSL reactions therefore
        # do not apply to resource requests of this class; discovery still goes through kmock.)
        if request.resource is None or not request.resource.plural or not self._served(request):
            return await super()._handle(request)
        method = request.method.value.upper()
        ctype = str(request.headers.get("Content-Type", ""))
        if method == "PATCH" and request.name:
            if ctype.startswith(APPLY_PATCH):
                return await self._server_side_apply(request)
            return await self._patch(request)
        if method == "POST" and not request.name:
            return await self._create(request)
        if method == "DELETE" and request.name:
            return await self._delete(request)
        if method == "GET" and request.params.get("watch") in ("true", "1"):
            return await self._watch(request)
        if method == "GET" and request.name:
            return self._fetch(request)
        if method == "GET":
            return self._list(request)
        return _status(405, "MethodNotAllowed", f"{method} is not supported on {request.url.path}")

    def _served(self, request: rendering.Request) -> bool:
        if request.resource not in self._declared:
            self._declared.update(self._get_resources())
        return request.resource in self._declared

    def _key(self, request: rendering.Request) -> tuple[Any, str | None, str | None]:
        return request.resource, request.namespace, request.name

    def _live(self, key: tuple[Any, str | None, str | None]) -> Any:
        return self._objects[key] if key in self._objects and not self._objects[key].deleted else None

    async def _emit(self, request: rendering.Request, kind: str, obj: Mapping[str, Any]) -> None:
        assert request.resource is not None
        await self._buses[request.resource].put({"type": kind, "object": dict(obj)})

    async def _create(self, request: rendering.Request) -> aiohttp.web.StreamResponse:
        if not isinstance(request.data, dict):
            return _status(400, "BadRequest", "the body must be a JSON object")
        new = copy.deepcopy(request.data)
        self._stamp_new(request, new)
        key = (request.resource, new["metadata"].get("namespace") if request.namespace else None,
               new["metadata"].get("name"))
        async with self._lock:
            if self._live(key) is not None:
                self.fresh.discard(new["metadata"]["resourceVersion"])
                return _status(409, "AlreadyExists", f"{request.resource.plural} {key[2]!r} already exists")
            if key in self._objects:
                self._objects[key].history.append(new)
            else:
                self._objects[key] = new
            await self._emit(request, "ADDED", new)
        return aiohttp.web.json_response(new, status=201)

    async def _delete(self, request: rendering.Request) -> aiohttp.web.StreamResponse:
        key = self._key(request)
        async with self._lock:
            stored = self._live(key)
            if stored is None:
                return _status(404, "NotFound", f"{request.resource} {request.name} not found")
            old = copy.deepcopy(stored.raw)
            meta = old.setdefault("metadata", {})
            if meta.get("finalizers"):
                if not meta.get("deletionTimestamp"):
                    meta["deletionTimestamp"] = _now()
                    meta["resourceVersion"] = self.next_rv()
                    stored.history.append(old)
                    await self._emit(request, "MODIFIED", old)
                return aiohttp.web.json_response(old, status=202)
            stored.delete()
            self._applied = {k: v for k, v in self._applied.items() if k[0] != key}
            await self._emit(request, "DELETED", old)
        return aiohttp.web.json_response(old)

    def _fetch(self, request: rendering.Request) -> aiohttp.web.StreamResponse:
        stored = self._live(self._key(request))
        if stored is None:
            return _status(404, "NotFound", f"{request.resource} {request.name} not found")
        return aiohttp.web.json_response(stored.raw)

    def _list(self, request: rendering.Request) -> aiohttp.web.StreamResponse:
        return aiohttp.web.json_response({"apiVersion": "v1", "kind": "List",
                                          "metadata": {"resourceVersion": str(self._last_rv)},
                                          "items": list(self._current(request))})

    async def _patch(self, request: rendering.Request) -> aiohttp.web.StreamResponse:
        data = request.data
        if not isinstance(data, dict | list):
            return _status(400, "BadRequest", "a patch body must be a JSON object or a JSON patch")
        key = self._key(request)
        async with self._lock:
            stored = self._live(key)
            if stored is None:
                return _status(404, "NotFound", f"{request.resource} {request.name} not found")
            old = copy.deepcopy(stored.raw)
            if request.subresource == "status" and isinstance(data, dict):
                data = {"status": data.get("status")}
            new = dict(dicts.patch_dict(old, data))
            if _without_volatile(new) == _without_volatile(old):
                return aiohttp.web.json_response(old)
            meta = new.setdefault("metadata", {})
            if request.subresource is None and new.get("spec") != old.get("spec"):
                meta["generation"] = int(meta.get("generation") or 1) + 1
            meta["resourceVersion"] = self.next_rv()
            stored.history.append(new)
            await self._emit(request, "MODIFIED", new)
            if meta.get("deletionTimestamp") and not meta.get("finalizers"):
                stored.delete()
                await self._emit(request, "DELETED", new)
        return aiohttp.web.json_response(new)

    async def _server_side_apply(self, request: rendering.Request) -> aiohttp.web.StreamResponse:
        try:
            applied = yaml.safe_load(request.text)
        except yaml.YAMLError as e:
            return _status(400, "BadRequest", f"cannot parse the applied configuration: {e}")
        manager = request.params.get("fieldManager")
        if not manager:
            return _status(400, "BadRequest", "PATCH with application/apply-patch+yaml requires fieldManager")
        if not isinstance(applied, dict) or not applied.get("apiVersion") or not applied.get("kind"):
            return _status(400, "BadRequest", "an applied configuration needs apiVersion and kind")
        if (applied.get("metadata") or {}).get("name") != request.name:
            return _status(400, "BadRequest", "metadata.name does not match the URL")
        key = self._key(request)
        entry = {"manager": manager, "operation": "Apply", "apiVersion": applied["apiVersion"],
                 "time": _now(), "fieldsType": "FieldsV1", "fieldsV1": {}}
        async with self._lock:
            stored = self._live(key)
            if stored is None:
                new = copy.deepcopy(applied)
                self._stamp_new(request, new)
                new["metadata"]["managedFields"] = [entry]
                if key in self._objects:
                    self._objects[key].history.append(new)
                else:
                    self._objects[key] = new
                self._applied[(key, manager)] = (new["metadata"]["uid"], copy.deepcopy(applied))
                await self._emit(request, "ADDED", new)
                return aiohttp.web.json_response(new, status=201)
            old = copy.deepcopy(stored.raw)
            uid = old["metadata"].get("uid")
            before_uid, before = self._applied.get((key, manager), (None, {}))
            base = copy.deepcopy(old)
            if before_uid == uid:
                _remove_dropped(base, before, applied)
            new = _merge(base, applied)
            self._applied[(key, manager)] = (uid, copy.deepcopy(applied))
            if _without_volatile(new) == _without_volatile(old):
                return aiohttp.web.json_response(old)
            meta = new["metadata"]
            if new.get("spec") != old.get("spec"):
                meta["generation"] = int(meta.get("generation") or 1) + 1
            meta["managedFields"] = [m for m in meta.get("managedFields") or []
                                     if not (m.get("manager") == manager and m.get("operation") == "Apply")] + [entry]
            meta["resourceVersion"] = self.next_rv()
            stored.history.append(new)
            await self._emit(request, "MODIFIED", new)
        return aiohttp.web.json_response(new)

    # -- reads ---------------------------------------------------------------------------

    def _visible(self, request: rendering.Request, obj: Mapping[str, Any]) -> bool:
        meta = obj.get("metadata") or {}
        if request.namespace is not None and meta.get("namespace") != request.namespace:
            return False
        if request.name is not None and meta.get("name") != request.name:
            return False
        selector = request.params.get("labelSelector")
        return not selector or _selector_matches(selector, meta.get("labels") or {})

    def _current(self, request: rendering.Request) -> Iterator[dict[str, Any]]:
        for (resource, _, _), obj in list(self._objects.items()):
            if resource == request.resource and not obj.deleted and self._visible(request, obj.raw):
                yield obj.raw

    async def _watch(self, request: rendering.Request) -> aiohttp.web.StreamResponse:
        assert request.resource is not None and request._raw_request is not None
        response = aiohttp.web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request._raw_request)
        bus = self._buses[request.resource]
        assert isinstance(bus, _LoggedBus)
        marker = await bus.mark()
        try:
            # Nothing may be awaited between the mark and these snapshots; events put on the bus
            # after the mark are streamed below unless the snapshot already covers them.
            since = str(request.params.get("resourceVersion") or "")
            if since.isdigit() and int(since) > 0:
                replay = [(rv, event) for rv, event in bus.log if rv > int(since)]
                pending = [event for _, event in replay]
                last = max([int(since), *(rv for rv, _ in replay)])
            else:
                objects = list(self._current(request))
                pending = [{"type": "ADDED", "object": obj} for obj in objects]
                last = max([0, *(int(o["metadata"].get("resourceVersion") or 0) for o in objects)])
            for event in pending:
                if self._visible(request, event.get("object") or {}):
                    await response.write(json.dumps(event).encode() + b"\n")
            async for event in bus.stream(since=marker):
                rv = int((event.get("object") or {}).get("metadata", {}).get("resourceVersion") or 0)
                if rv > last and self._visible(request, event.get("object") or {}):
                    await response.write(json.dumps(event).encode() + b"\n")
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            await bus.unmark(marker)
        return response
