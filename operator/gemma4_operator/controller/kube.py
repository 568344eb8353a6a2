"""Kubernetes API calls of the operator, through the official ``kubernetes`` client (synchronous:
call it from a thread, e.g. ``asyncio.to_thread``).

- Children are written with **server-side apply**: ``PATCH`` with
  ``Content-Type: application/apply-patch+yaml``, ``fieldManager=gemma4-operator`` and
  ``force=true`` (the client serialises the dict as JSON, which is YAML). Requests go through
  ``ApiClient.param_serialize`` + ``call_api`` so objects stay plain dicts, with no model
  round-trip that could drop or add fields.
- Status is a JSON merge patch of the ``/status`` subresource; Events are core/v1.
- Failures become kopf errors: conflicts, throttling (429, honouring Retry-After), 5xx,
  timeouts and connection errors are :class:`RetryableApiError` (a ``kopf.TemporaryError``);
  an object the API server refuses as invalid (400/422) is :class:`InvalidRequestError`
  (a ``kopf.PermanentError``) whose message is the server's.

One ``ApiClient`` per process (:func:`build_api_client`); urllib3 retries are off so the only
retry policy is the operator's.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import kopf
import urllib3
from kubernetes import client, config

from gemma4_operator.api import GROUP, PLURAL, VERSION
from gemma4_operator.render.children import MANAGER

APPLY_PATCH = "application/apply-patch+yaml"
MERGE_PATCH = "application/merge-patch+json"
RETRYABLE_STATUS = {409: "Conflict", 429: "Throttled", 500: "ServerError", 502: "ServerError",
                    503: "ServerError", 504: "ServerError"}

K8sObject = dict[str, Any]


@dataclass(frozen=True)
class ResourceType:
    group: str
    version: str
    plural: str
    namespaced: bool = True

    def path(self, namespace: str | None = None, name: str | None = None, subresource: str | None = None) -> str:
        base = f"/api/{self.version}" if not self.group else f"/apis/{self.group}/{self.version}"
        if self.namespaced and namespace:
            base += f"/namespaces/{namespace}"
        base += f"/{self.plural}"
        if name:
            base += f"/{name}"
        if subresource:
            base += f"/{subresource}"
        return base


# Kinds the operator reads or writes, by (apiVersion, kind).
RESOURCES: dict[tuple[str, str], ResourceType] = {
    ("apps/v1", "Deployment"): ResourceType("apps", "v1", "deployments"),
    ("v1", "Service"): ResourceType("", "v1", "services"),
    ("v1", "PersistentVolumeClaim"): ResourceType("", "v1", "persistentvolumeclaims"),
    ("batch/v1", "Job"): ResourceType("batch", "v1", "jobs"),
    ("policy/v1", "PodDisruptionBudget"): ResourceType("policy", "v1", "poddisruptionbudgets"),
    ("policy/v1beta1", "PodDisruptionBudget"): ResourceType("policy", "v1beta1", "poddisruptionbudgets"),
    ("v1", "Pod"): ResourceType("", "v1", "pods"),
    ("keda.sh/v1alpha1", "ScaledObject"): ResourceType("keda.sh", "v1alpha1", "scaledobjects"),
    ("monitoring.coreos.com/v1", "PodMonitor"): ResourceType("monitoring.coreos.com", "v1", "podmonitors"),
    ("metrics.k8s.io/v1beta1", "PodMetrics"): ResourceType("metrics.k8s.io", "v1beta1", "pods"),
    ("v1", "Event"): ResourceType("", "v1", "events"),
    ("networking.k8s.io/v1", "NetworkPolicy"): ResourceType("networking.k8s.io", "v1", "networkpolicies"),
    (f"{GROUP}/{VERSION}", "Gemma4Deployment"): ResourceType(GROUP, VERSION, PLURAL),
    # spec.routing.inferencePool's children
    ("v1", "ConfigMap"): ResourceType("", "v1", "configmaps"),
    ("v1", "ServiceAccount"): ResourceType("", "v1", "serviceaccounts"),
    ("rbac.authorization.k8s.io/v1", "RoleBinding"): ResourceType("rbac.authorization.k8s.io", "v1", "rolebindings"),
    ("inference.networking.k8s.io/v1", "InferencePool"): ResourceType("inference.networking.k8s.io", "v1",
                                                                      "inferencepools"),
    ("gateway.networking.k8s.io/v1", "HTTPRoute"): ResourceType("gateway.networking.k8s.io", "v1", "httproutes"),
}


class RetryableApiError(kopf.TemporaryError):
    """Conflict, throttling, server error, timeout: worth retrying with backoff."""

    def __init__(self, message: str, reason: str, retry_after: float | None = None) -> None:
        super().__init__(message, delay=retry_after or 1.0)
        self.reason = reason
        self.retry_after = retry_after


class InvalidRequestError(kopf.PermanentError):
    """The API server refused the object itself; retrying the same object cannot help."""

    def __init__(self, message: str, reason: str = "Invalid") -> None:
        super().__init__(message)
        self.reason = reason


def _user_agent() -> str:
    try:
        return f"{MANAGER}/{version('gemma4-operator')}"
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        return f"{MANAGER}/dev"


def build_api_client(server: str | None = None, *, pool_size: int = 32) -> client.ApiClient:
    """The process's single ApiClient: in-cluster service account, else kubeconfig;
    ``server`` (no credentials, plain URL) is for tests and benchmarks."""
    cfg = client.Configuration()
    if server:
        cfg.host = server.rstrip("/")
    else:
        try:
            config.load_incluster_config(client_configuration=cfg)  # type: ignore[no-untyped-call]
        except config.ConfigException:
            # $KUBECONFIG read now (the client reads it once, at import)
            config.load_kube_config(config_file=os.environ.get("KUBECONFIG"),  # type: ignore[no-untyped-call]
                                    client_configuration=cfg)
    cfg.retries = False  # the operator's backoff is the only retry policy
    cfg.connection_pool_maxsize = pool_size
    api = client.ApiClient(cfg)
    api.user_agent = _user_agent()
    return api


def _server_message(body: Any) -> str:
    if isinstance(body, bytes | bytearray):
        body = body.decode("utf-8", "replace")
    try:
        parsed = json.loads(body) if isinstance(body, str) else None
    except ValueError:
        parsed = None
    if isinstance(parsed, Mapping) and parsed.get("message"):
        return str(parsed["message"])
    return str(body or "").strip()[:300]


def _retry_after(headers: Mapping[str, str] | None) -> float | None:
    value = (headers or {}).get("Retry-After") or (headers or {}).get("retry-after")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def classify(exc: BaseException, what: str) -> Exception:
    """Map a client failure to a kopf error (or return it unchanged when it is not an API failure)."""
    if isinstance(exc, client.ApiException):
        status = int(exc.status or 0)
        message = f"{what}: HTTP {status}: {_server_message(exc.body) or exc.reason}"
        if status in RETRYABLE_STATUS:
            return RetryableApiError(message, RETRYABLE_STATUS[status], _retry_after(exc.headers))
        if status in (400, 422):
            return InvalidRequestError(message)
        if status in (401, 403):
            return RetryableApiError(message, "Forbidden", 30.0)  # RBAC can be fixed while we wait
        if status == 404:
            return RetryableApiError(message, "NotFound", 5.0)  # e.g. the namespace is still being created
        return RetryableApiError(message, f"HTTP{status}")
    if isinstance(exc, urllib3.exceptions.TimeoutError):
        return RetryableApiError(f"{what}: timed out", "Timeout")
    if isinstance(exc, urllib3.exceptions.HTTPError | OSError):
        return RetryableApiError(f"{what}: {type(exc).__name__}: {exc}", "ConnectionError")
    return exc if isinstance(exc, Exception) else RuntimeError(str(exc))


class Kube:
    """The operator's API calls. Thread-safe: share one instance per process."""

    def __init__(self, api: client.ApiClient, *, request_timeout: float = 30.0, field_manager: str = MANAGER) -> None:
        self.api = api
        self.request_timeout = request_timeout
        self.field_manager = field_manager

    def close(self) -> None:
        self.api.close()  # type: ignore[no-untyped-call]

    def _request(self, method: str, path: str, *, what: str, query: Mapping[str, str] | None = None,
                 body: Any = None, content_type: str | None = None) -> K8sObject:
        headers = {"Accept": "application/json"}
        if content_type:
            headers["Content-Type"] = content_type
        try:
            _, url, header_params, serialized, _ = self.api.param_serialize(
                method=method, resource_path=path, query_params=list((query or {}).items()),
                header_params=headers, body=body, auth_settings=["BearerToken"])
            response = self.api.call_api(method, url, header_params=header_params, body=serialized,
                                         _request_timeout=self.request_timeout)
            data = response.read()  # type: ignore[no-untyped-call]
            if not 200 <= response.status <= 299:
                # http_resp: the exception keeps the response's headers only from it (Retry-After, classify)
                raise client.ApiException(http_resp=response, body=data)
        except Exception as exc:
            raise classify(exc, what) from exc
        parsed: K8sObject = json.loads(data) if data else {}
        return parsed

    @staticmethod
    def resource(api_version: str, kind: str) -> ResourceType:
        try:
            return RESOURCES[(api_version, kind)]
        except KeyError:
            raise InvalidRequestError(f"the operator does not manage {kind} ({api_version})") from None

    def apply(self, obj: Mapping[str, Any], *, field_manager: str | None = None) -> K8sObject:
        """Server-side apply of a whole child, forced: the operator owns exactly these fields.
        ``field_manager`` overrides the client's (the autoscaler owns only ``spec.replicas``)."""
        meta = obj["metadata"]
        res = self.resource(obj["apiVersion"], obj["kind"])
        return self._request("PATCH", res.path(meta["namespace"], meta["name"]), body=dict(obj),
                             what=f"apply {obj['kind']} {meta['namespace']}/{meta['name']}",
                             content_type=APPLY_PATCH,
                             query={"fieldManager": field_manager or self.field_manager, "force": "true"})

    def dry_run_create(self, obj: Mapping[str, Any]) -> K8sObject:
        """The object as the API server would store it (defaulted, unknown or disabled fields dropped);
        nothing is stored (dryRun=All)."""
        meta = obj["metadata"]
        return self._request("POST", self.resource(obj["apiVersion"], obj["kind"]).path(meta["namespace"]),
                             body=dict(obj), query={"dryRun": "All"},
                             what=f"dry-run create {obj['kind']} {meta['namespace']}/{meta['name']}")

    def server_version(self) -> str:
        return str(self._request("GET", "/version", what="read the server version").get("gitVersion") or "")

    def get(self, api_version: str, kind: str, namespace: str, name: str) -> K8sObject | None:
        try:
            return self._request("GET", self.resource(api_version, kind).path(namespace, name),
                                 what=f"get {kind} {namespace}/{name}")
        except RetryableApiError as e:
            if e.reason == "NotFound":
                return None
            raise

    def list(self, api_version: str, kind: str, namespace: str, label_selector: str = "",
             field_selector: str = "") -> list[K8sObject]:
        query = {k: v for k, v in (("labelSelector", label_selector), ("fieldSelector", field_selector)) if v}
        items = self._request("GET", self.resource(api_version, kind).path(namespace), query=query,
                              what=f"list {kind} in {namespace}").get("items") or []
        return [dict(i) for i in items]

    def delete(self, api_version: str, kind: str, namespace: str, name: str,
               propagation: str = "Background") -> None:
        try:
            self._request("DELETE", self.resource(api_version, kind).path(namespace, name),
                          what=f"delete {kind} {namespace}/{name}", query={"propagationPolicy": propagation})
        except RetryableApiError as e:
            if e.reason != "NotFound":
                raise

    def _discover(self, path: str) -> K8sObject | None:
        """A discovery document, None when the server does not serve that group (version)."""
        try:
            return self._request("GET", path, what=f"discover {path}")
        except RetryableApiError as e:
            if e.reason == "NotFound":
                return None
            raise

    def preferred_group_version(self, group: str) -> str | None:
        """Discovery: the API server's preferred ``group/version`` of a group, None if not served."""
        data = self._discover(f"/apis/{group}") or {}
        preferred = (data.get("preferredVersion") or {}).get("groupVersion")
        return str(preferred) if preferred else None

    def serves(self, group_version: str, plural: str) -> bool:
        """Discovery: whether the API server serves ``plural`` in ``group/version`` (e.g. a CRD's)."""
        data = self._discover(f"/apis/{group_version}") or {}
        return any(r.get("name") == plural for r in data.get("resources") or [] if isinstance(r, Mapping))

    def patch_status(self, namespace: str, name: str, patch: Mapping[str, Any]) -> K8sObject:
        res = RESOURCES[(f"{GROUP}/{VERSION}", "Gemma4Deployment")]
        return self._request("PATCH", res.path(namespace, name, "status"), body={"status": dict(patch)},
                             what=f"patch status of Gemma4Deployment {namespace}/{name}", content_type=MERGE_PATCH)

    def create_event(self, event: Mapping[str, Any]) -> K8sObject:
        namespace = event["metadata"]["namespace"]
        return self._request("POST", RESOURCES[("v1", "Event")].path(namespace), body=dict(event),
                             what=f"create Event in {namespace}")
