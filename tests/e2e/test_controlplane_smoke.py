"""Smoke test of the real control plane fixture: CRDs, server-side schema validation, GC, RBAC + SA tokens."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client import ApiException

from tests.e2e.controlplane import ControlPlane
from tests.e2e.waiting import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.floor]

GROUP = "smoke.gemma4-e2e.example.com"
PLURAL = "widgets"
VERSION = "v1"


def as_dict(obj: object) -> dict[str, Any]:
    """The CustomObjectsApi returns plain dicts typed as ``object``."""
    assert isinstance(obj, dict)
    return obj


def error_body(err: ApiException) -> dict[str, Any]:
    return as_dict(json.loads(err.body or "{}"))


def make_widget_crd() -> client.V1CustomResourceDefinition:
    crd = client.V1CustomResourceDefinition.from_dict(
        {
            "apiVersion": "apiextensions.k8s.io/v1",
            "kind": "CustomResourceDefinition",
            "metadata": {"name": f"{PLURAL}.{GROUP}"},
            "spec": {
                "group": GROUP,
                "scope": "Namespaced",
                "names": {"plural": PLURAL, "singular": "widget", "kind": "Widget", "listKind": "WidgetList"},
                "versions": [
                    {
                        "name": VERSION,
                        "served": True,
                        "storage": True,
                        "subresources": {"status": {}},
                        "schema": {
                            "openAPIV3Schema": {
                                "type": "object",
                                "required": ["spec"],
                                "properties": {
                                    "spec": {
                                        "type": "object",
                                        "required": ["replicas"],
                                        "properties": {
                                            "replicas": {"type": "integer", "minimum": 1},
                                            "engine": {"type": "string", "enum": ["vllm", "llamacpp"]},
                                        },
                                    },
                                    "status": {
                                        "type": "object",
                                        "x-kubernetes-preserve-unknown-fields": True,
                                    },
                                },
                            }
                        },
                    }
                ],
            },
        }
    )
    assert crd is not None
    return crd


def widget(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "Widget", "metadata": {"name": name}, "spec": spec}


@pytest.fixture(scope="module")
def widget_crd(k8s_api: client.ApiClient) -> Iterator[str]:
    ext = client.ApiextensionsV1Api(k8s_api)
    name = f"{PLURAL}.{GROUP}"
    ext.create_custom_resource_definition(make_widget_crd())

    def established() -> bool:
        crd = ext.read_custom_resource_definition(name)
        conditions = (crd.status and crd.status.conditions) or []
        return any(c.type == "Established" and c.status == "True" for c in conditions)

    wait_for("CRD Established", established)
    yield name
    ext.delete_custom_resource_definition(name)


def test_namespace_and_crd_established(k8s_api: client.ApiClient, e2e_namespace: str, widget_crd: str) -> None:
    ns = client.CoreV1Api(k8s_api).read_namespace(e2e_namespace)
    assert ns.status is not None
    assert ns.status.phase == "Active"
    crd = client.ApiextensionsV1Api(k8s_api).read_custom_resource_definition(widget_crd)
    assert crd.spec.names.kind == "Widget"


@pytest.mark.usefixtures("widget_crd")
def test_owned_configmap_is_garbage_collected(k8s_api: client.ApiClient, e2e_namespace: str) -> None:
    custom = client.CustomObjectsApi(k8s_api)
    core = client.CoreV1Api(k8s_api)
    cr = as_dict(
        custom.create_namespaced_custom_object(
            GROUP, VERSION, e2e_namespace, PLURAL, widget("w1", {"replicas": 2, "engine": "vllm"})
        )
    )
    assert cr["metadata"]["uid"]
    assert cr["metadata"]["generation"] == 1

    owner = client.V1OwnerReference(
        api_version=f"{GROUP}/{VERSION}",
        kind="Widget",
        name="w1",
        uid=cr["metadata"]["uid"],
        controller=True,
        block_owner_deletion=True,
    )
    cm = core.create_namespaced_config_map(
        e2e_namespace,
        client.V1ConfigMap(metadata=client.V1ObjectMeta(name="w1-config", owner_references=[owner]), data={"k": "v"}),
    )
    assert cm.metadata is not None
    assert cm.metadata.owner_references is not None
    assert cm.metadata.owner_references[0].uid == cr["metadata"]["uid"]

    # Real status subresource: a status patch does not bump generation.
    patched = as_dict(
        custom.patch_namespaced_custom_object_status(
            GROUP, VERSION, e2e_namespace, PLURAL, "w1", {"status": {"phase": "Ready"}}
        )
    )
    assert patched["status"] == {"phase": "Ready"}
    assert patched["metadata"]["generation"] == 1

    custom.delete_namespaced_custom_object(GROUP, VERSION, e2e_namespace, PLURAL, "w1")

    def config_map_gone() -> bool:
        try:
            core.read_namespaced_config_map("w1-config", e2e_namespace)
        except ApiException as err:
            if err.status == 404:
                return True
            raise
        return False

    t0 = time.monotonic()
    # The GC picks up a brand-new CRD on its 30 s discovery resync, so allow for that plus retry back-off.
    wait_for("garbage collection of the owned ConfigMap", config_map_gone, timeout=180.0, interval=0.5)
    print(f"ConfigMap garbage-collected {time.monotonic() - t0:.1f}s after the owner was deleted")


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"replicas": 0}, "spec.replicas"),
        ({"replicas": 1, "engine": "tgi"}, "spec.engine"),
        ({"engine": "vllm"}, "spec.replicas"),
    ],
)
@pytest.mark.usefixtures("widget_crd")
def test_schema_invalid_cr_is_rejected(
    k8s_api: client.ApiClient, e2e_namespace: str, spec: dict[str, Any], field: str
) -> None:
    custom = client.CustomObjectsApi(k8s_api)
    with pytest.raises(ApiException) as excinfo:
        custom.create_namespaced_custom_object(GROUP, VERSION, e2e_namespace, PLURAL, widget("bad", spec))
    assert excinfo.value.status == 422
    body = error_body(excinfo.value)
    assert body["reason"] == "Invalid"
    causes = body["details"]["causes"]
    assert any(c["field"] == field for c in causes), causes
    assert field in body["message"]


def test_service_account_token_is_subject_to_rbac(
    control_plane: ControlPlane, k8s_api: client.ApiClient, e2e_namespace: str
) -> None:
    token = control_plane.service_account_token(e2e_namespace, "reader")
    assert token.count(".") == 2  # a JWT

    with control_plane.api_client(token) as sa_api:
        sa_core = client.CoreV1Api(sa_api)
        with pytest.raises(ApiException) as excinfo:
            sa_core.list_namespaced_config_map(e2e_namespace)
        assert excinfo.value.status == 403
        assert error_body(excinfo.value)["message"].startswith(
            f'configmaps is forbidden: User "system:serviceaccount:{e2e_namespace}:reader"'
        )

        rbac = client.RbacAuthorizationV1Api(k8s_api)
        rbac.create_namespaced_role(
            e2e_namespace,
            client.V1Role(
                metadata=client.V1ObjectMeta(name="cm-reader"),
                rules=[client.V1PolicyRule(api_groups=[""], resources=["configmaps"], verbs=["get", "list"])],
            ),
        )
        rbac.create_namespaced_role_binding(
            e2e_namespace,
            client.V1RoleBinding(
                metadata=client.V1ObjectMeta(name="cm-reader"),
                role_ref=client.V1RoleRef(api_group="rbac.authorization.k8s.io", kind="Role", name="cm-reader"),
                subjects=[client.RbacV1Subject(kind="ServiceAccount", name="reader", namespace=e2e_namespace)],
            ),
        )

        def can_list() -> bool:
            try:
                sa_core.list_namespaced_config_map(e2e_namespace)
            except ApiException as err:
                if err.status == 403:
                    return False
                raise
            return True

        wait_for("RBAC binding to take effect", can_list, timeout=10.0)
        with pytest.raises(ApiException) as excinfo:
            sa_core.list_namespaced_secret(e2e_namespace)
        assert excinfo.value.status == 403
