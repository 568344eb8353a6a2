"""What a Gemma4Deployment may set: the administrator's tenant policy (pure, no I/O).

The Helm chart ships the same rules as a ValidatingAdmissionPolicy, so the API server refuses a spec at
admission; the operator re-checks them (for clusters without the policy, and for objects created before it)
and refuses in the same words with ``Planned=False``, reason ``PolicyViolation``.
"""

from gemma4_operator.policy.rules import (
    RULES,
    PolicyViolationError,
    catalog_engine_images,
    check_policy,
    policy_refusals,
    refusal,
)
from gemma4_operator.policy.values import ANY, TenantPolicy, TenantPolicyError, helm_key, parse_tenant_policy

__all__ = [
    "ANY",
    "RULES",
    "PolicyViolationError",
    "TenantPolicy",
    "TenantPolicyError",
    "catalog_engine_images",
    "check_policy",
    "helm_key",
    "parse_tenant_policy",
    "policy_refusals",
    "refusal",
]
