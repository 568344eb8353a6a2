"""The tenant policy's rules over a parsed spec, worded as the chart's ValidatingAdmissionPolicy words them.

Each rule here has a twin validation in charts/gemma4-operator/templates/tenant-policy.yaml, in the same order
and with the same message; tests/packaging/test_tenant_policy_chart.py runs one table of specs through both.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from gemma4_operator.api import Gemma4DeploymentSpec
from gemma4_operator.catalog import Catalog, load_catalog
from gemma4_operator.planner.plan import PlanError
from gemma4_operator.planner.sources import parse_source
from gemma4_operator.policy.values import ANY, TenantPolicy, helm_key


class PolicyViolationError(PlanError):
    """The spec sets what the tenant policy refuses: no plan, no children (Planned=False, PolicyViolation)."""

    reason = "PolicyViolation"

    def __init__(self, refusals: Iterable[str]) -> None:
        self.refusals = tuple(refusals)
        super().__init__("; ".join(self.refusals), ())

    @property
    def message(self) -> str:
        return "\n".join(self.refusals)


Rule = Callable[[Gemma4DeploymentSpec, TenantPolicy, frozenset[str]], str | None]


def refusal(field: str, what: str, key: str, hint: str = "") -> str:
    """One refusal as a user reads it: the field, what in it is refused, and the Helm value that allows it."""
    return (f"{field}: {what} is not allowed by the tenant policy; an administrator allows it with the Helm value "
            f"tenantPolicy.{key}{hint}")


def _named(allowed: tuple[str, ...], name: str) -> bool:
    return ANY in allowed or name in allowed


def _prefixed(allowed: tuple[str, ...], value: str) -> bool:
    return any(p == ANY or value.startswith(p) for p in allowed)


def _image(spec: Gemma4DeploymentSpec, policy: TenantPolicy, images: frozenset[str]) -> str | None:
    image = spec.serving.image
    if not image or image in images or _prefixed(policy.image_prefixes, image):
        return None
    return refusal("spec.serving.image", f'image "{image}"', "imagePrefixes",
                   " (the engine images of the catalog and operator.images are always allowed)")


def _extra_args(spec: Gemma4DeploymentSpec, policy: TenantPolicy, _: frozenset[str]) -> str | None:
    refused = [a for a in spec.serving.extra_args if not _prefixed(policy.extra_arg_prefixes, a)]
    if not refused:
        return None
    return refusal("spec.serving.extraArgs", f'argument "{refused[0]}"', "extraArgPrefixes",
                   " (a flag and its value as one argument: --flag=value)")


def _secret_key_ref_name(value_from: object) -> str | None:
    """The Secret an env entry's valueFrom reads, or None when it reads no Secret."""
    ref = value_from.get("secretKeyRef") if isinstance(value_from, dict) else None
    if not isinstance(ref, dict):
        return None
    return str(ref.get("name") or "")


def _env_secrets(spec: Gemma4DeploymentSpec, policy: TenantPolicy, _: frozenset[str]) -> str | None:
    names = (_secret_key_ref_name(e.value_from) for e in spec.serving.env)
    refused = [n for n in names if n is not None and not _named(policy.secret_names, n)]
    if not refused:
        return None
    return refusal("spec.serving.env", f'Secret "{refused[0]}" (valueFrom.secretKeyRef)', "secretNames")


def _token_secret(spec: Gemma4DeploymentSpec, policy: TenantPolicy, _: frozenset[str]) -> str | None:
    ref = spec.model.source.token_secret_ref if spec.model.source else None
    if ref is None or _named(policy.secret_names, ref.name):
        return None
    return refusal("spec.model.source.tokenSecretRef", f'Secret "{ref.name}"', "secretNames")


def _api_key_secret(spec: Gemma4DeploymentSpec, policy: TenantPolicy, _: frozenset[str]) -> str | None:
    ref = spec.serving.api_key_secret_ref
    if ref is None or _named(policy.secret_names, ref.name):
        return None
    return refusal("spec.serving.apiKeySecretRef", f'Secret "{ref.name}"', "secretNames")


def _pod_name_rule(attr: str, noun: str) -> Rule:
    """A podTemplate.spec name field (empty: the cluster's default) limited to the names the policy lists in
    the field of the same name plus s (service_account_name -> service_account_names)."""
    def rule(spec: Gemma4DeploymentSpec, policy: TenantPolicy, _: frozenset[str]) -> str | None:
        name = str(getattr(spec.pod_template.spec, attr))
        if not name or _named(getattr(policy, f"{attr}s"), name):
            return None
        return refusal(f"spec.podTemplate.spec.{helm_key(attr)}", f'{noun} "{name}"', helm_key(f"{attr}s"))

    return rule


def _tolerations(spec: Gemma4DeploymentSpec, policy: TenantPolicy, _: frozenset[str]) -> str | None:
    keys = (str(t.get("key") or "") for t in spec.pod_template.spec.tolerations)
    refused = [k for k in keys if not _named(policy.toleration_keys, k)]
    if not refused:
        return None
    return refusal("spec.podTemplate.spec.tolerations", f'a toleration of key "{refused[0]}"', "tolerationKeys")


def _node_selector(spec: Gemma4DeploymentSpec, policy: TenantPolicy, _: frozenset[str]) -> str | None:
    refused = [k for k in spec.pod_template.spec.node_selector if not _named(policy.node_selector_keys, k)]
    if not refused:
        return None
    # one key is named; several are counted (a map has no order the admission policy could name them in)
    what = f'node label "{refused[0]}"' if len(refused) == 1 else f"each of {len(refused)} node labels"
    return refusal("spec.podTemplate.spec.nodeSelector", what, "nodeSelectorKeys")


def _affinity(spec: Gemma4DeploymentSpec, policy: TenantPolicy, _: frozenset[str]) -> str | None:
    if policy.affinity or not spec.pod_template.spec.affinity:
        return None
    return refusal("spec.podTemplate.spec.affinity", "an affinity", "affinity")


def _pvc_source(spec: Gemma4DeploymentSpec, policy: TenantPolicy, _: frozenset[str]) -> str | None:
    uri = spec.model.source.uri if spec.model.source else ""
    source = parse_source(uri) if uri else None
    if source is None or source.scheme != "pvc" or _named(policy.pvc_claims, source.claim):
        return None
    return refusal("spec.model.source.uri", f'the claim of "{uri}"', "pvcClaims")


def _run_as_root(spec: Gemma4DeploymentSpec, policy: TenantPolicy, _: frozenset[str]) -> str | None:
    """UID 0 in the pods (the default is a non-root UID): refused unless allowed, in namespaces that do not
    enforce Pod Security too."""
    if policy.run_as_root or spec.serving.security_context.run_as_user != 0:
        return None
    return refusal("spec.serving.securityContext.runAsUser", "running as root (0)", "runAsRoot")


def _network_policy_opt_out(spec: Gemma4DeploymentSpec, policy: TenantPolicy, _: frozenset[str]) -> str | None:
    """An object that turns its NetworkPolicy off undoes an administrator's default (--network-policy): its
    serving port is then open to every pod of the cluster."""
    if policy.network_policy_opt_out or spec.network_policy is None or spec.network_policy.enabled is not False:
        return None
    return refusal("spec.networkPolicy.enabled", "turning the NetworkPolicy off (false)", "networkPolicyOptOut")


# In the order of the admission policy's validations.
RULES: tuple[Rule, ...] = (
    _image,
    _extra_args,
    _env_secrets,
    _token_secret,
    _api_key_secret,
    _pod_name_rule("service_account_name", "ServiceAccount"),
    _pod_name_rule("priority_class_name", "PriorityClass"),
    _pod_name_rule("runtime_class_name", "RuntimeClass"),
    _pod_name_rule("scheduler_name", "scheduler"),
    _tolerations,
    _node_selector,
    _affinity,
    _pvc_source,
    _run_as_root,
    _network_policy_opt_out,
)


def catalog_engine_images(catalog: Catalog) -> frozenset[str]:
    """Every engine image the catalog pins (GPU and CPU, every architecture): always allowed."""
    return frozenset(image for engine in catalog.engines.values()
                     for table in (engine.images.gpu, engine.images.cpu) for image in table.values())


def policy_refusals(spec: Gemma4DeploymentSpec, policy: TenantPolicy, operator_images: Iterable[str]) -> list[str]:
    """Every rule ``spec`` breaks, in words. The catalog's engine images and ``operator_images`` (the operator's
    --image defaults, the chart's operator.images) are always allowed."""
    allowed = catalog_engine_images(load_catalog()) | frozenset(operator_images)
    return [message for rule in RULES if (message := rule(spec, policy, allowed)) is not None]


def check_policy(spec: Gemma4DeploymentSpec, policy: TenantPolicy | None, operator_images: Iterable[str]) -> None:
    """Raise PolicyViolationError when ``spec`` breaks ``policy`` (None: no policy, everything allowed)."""
    refused = policy_refusals(spec, policy, operator_images) if policy is not None else []
    if refused:
        raise PolicyViolationError(refused)
