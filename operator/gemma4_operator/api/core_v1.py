"""The core/v1 shapes a Gemma4Deployment passes through to its pods: tolerations, affinity, env valueFrom, and the
label and annotation syntax of its pods' metadata and node selector.

The CRD keeps these free-form (x-kubernetes-preserve-unknown-fields), so the API server stores whatever a
tenant writes; a malformed one would only fail when the operator applies the Deployment, far from the
field that is wrong. These models check them when the object is parsed (the CLI's exit 1, the operator's
``Planned=False``), with the field's path. They check what the API server checks on a pod (field names,
types, enums, the rules between fields), not what it cannot know (whether a label or a Secret exists);
the spec keeps the user's mapping as written: these models validate, they do not rewrite.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, model_validator
from pydantic.alias_generators import to_camel
from pydantic_core import PydanticCustomError

from gemma4_operator.api.problems import cross_field_error, validation_problems


class _CoreV1(BaseModel):
    model_config = ConfigDict(extra="forbid", alias_generator=to_camel, frozen=True)


Weight = Annotated[int, Field(ge=1, le=100)]


class Toleration(_CoreV1):
    key: str = ""
    operator: Literal["Exists", "Equal"] = "Equal"
    value: str = ""
    effect: Literal["", "NoSchedule", "PreferNoSchedule", "NoExecute"] = ""
    toleration_seconds: int | None = None

    @model_validator(mode="after")
    def _check_rules(self) -> Toleration:
        """The API server's rules between a toleration's fields (ValidateTolerations), in its words."""
        set_fields = self.model_fields_set
        problems = []
        if not self.key and self.operator != "Exists":
            problems.append("operator: must be Exists when key is empty (which tolerates every taint)")
        if self.operator == "Exists" and self.value:
            problems.append("value: must be empty when operator is Exists")
        if "toleration_seconds" in set_fields and self.effect != "NoExecute":
            problems.append("effect: must be NoExecute when tolerationSeconds is set")
        if problems:
            raise cross_field_error(problems)
        return self


class NodeSelectorRequirement(_CoreV1):
    key: str
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist", "Gt", "Lt"]
    values: list[str] | None = None


class NodeSelectorTerm(_CoreV1):
    match_expressions: list[NodeSelectorRequirement] | None = None
    match_fields: list[NodeSelectorRequirement] | None = None


class NodeSelector(_CoreV1):
    node_selector_terms: list[NodeSelectorTerm]


class PreferredSchedulingTerm(_CoreV1):
    weight: Weight
    preference: NodeSelectorTerm


class NodeAffinity(_CoreV1):
    required_during_scheduling_ignored_during_execution: NodeSelector | None = None
    preferred_during_scheduling_ignored_during_execution: list[PreferredSchedulingTerm] | None = None


class LabelSelectorRequirement(_CoreV1):
    key: str
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"]
    values: list[str] | None = None


class LabelSelector(_CoreV1):
    match_labels: dict[str, str] | None = None
    match_expressions: list[LabelSelectorRequirement] | None = None

    @model_validator(mode="after")
    def _check_labels(self) -> LabelSelector:
        problems = label_problems("matchLabels", self.match_labels or {})
        if problems:
            raise cross_field_error(problems)
        return self


class PodAffinityTerm(_CoreV1):
    label_selector: LabelSelector | None = None
    namespace_selector: LabelSelector | None = None
    namespaces: list[str] | None = None
    topology_key: str = Field(min_length=1)
    match_label_keys: list[str] | None = None
    mismatch_label_keys: list[str] | None = None


class WeightedPodAffinityTerm(_CoreV1):
    weight: Weight
    pod_affinity_term: PodAffinityTerm


class PodAffinity(_CoreV1):
    required_during_scheduling_ignored_during_execution: list[PodAffinityTerm] | None = None
    preferred_during_scheduling_ignored_during_execution: list[WeightedPodAffinityTerm] | None = None


class Affinity(_CoreV1):
    node_affinity: NodeAffinity | None = None
    pod_affinity: PodAffinity | None = None
    pod_anti_affinity: PodAffinity | None = None


class KeyRef(_CoreV1):
    name: str = Field(min_length=1)
    key: str = Field(min_length=1)
    optional: bool | None = None


class FieldRef(_CoreV1):
    field_path: str = Field(min_length=1)
    api_version: str | None = None


class ResourceFieldRef(_CoreV1):
    resource: str = Field(min_length=1)
    container_name: str | None = None
    divisor: str | int | None = None


class EnvVarSource(_CoreV1):
    secret_key_ref: KeyRef | None = None
    config_map_key_ref: KeyRef | None = None
    field_ref: FieldRef | None = None
    resource_field_ref: ResourceFieldRef | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> EnvVarSource:
        if len(self.model_fields_set) != 1:
            raise PydanticCustomError("one_source", "must set exactly one of secretKeyRef, configMapKeyRef, "
                                                    "fieldRef or resourceFieldRef")
        return self


_TOLERATIONS: TypeAdapter[list[Toleration]] = TypeAdapter(list[Toleration])
_AFFINITY: TypeAdapter[Affinity] = TypeAdapter(Affinity)
_ENV_VAR_SOURCE: TypeAdapter[EnvVarSource] = TypeAdapter(EnvVarSource)
_SHAPES: dict[str, TypeAdapter[Any]] = {"tolerations": _TOLERATIONS, "affinity": _AFFINITY,
                                        "valueFrom": _ENV_VAR_SOURCE}


_NAME = r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
_DNS_SUBDOMAIN = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*"
KEY_MESSAGE = ("an optional DNS subdomain prefix and '/', then a name of at most 63 letters, digits, '-', '_' "
               "or '.' that starts and ends with a letter or digit")
VALUE_MESSAGE = "at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit, or empty"
MAX_ANNOTATIONS_BYTES = 256 * 1024  # the API server's limit on all of an object's annotations together


def _valid_key(key: str) -> bool:
    prefix, _, name = key.rpartition("/")
    prefix_ok = not prefix or (len(prefix) <= 253 and re.fullmatch(_DNS_SUBDOMAIN, prefix) is not None)
    return prefix_ok and len(name) <= 63 and re.fullmatch(_NAME, name) is not None


def label_problems(field: str, labels: Mapping[str, str], *, values: bool = True) -> list[str]:
    """Keys (and with ``values``, values) the API server refuses in labels, a node selector or (keys only)
    annotations, each problem starting with its path from ``field``."""
    problems = [f"{field}.{key}: {key[:100]!r} is not a valid key: {KEY_MESSAGE}"
                for key in labels if not _valid_key(key)]
    if values:
        problems += [f"{field}.{key}: {value[:100]!r} is not a valid label value: {VALUE_MESSAGE}"
                     for key, value in labels.items() if value and (len(value) > 63 or not re.fullmatch(_NAME, value))]
    elif sum(len(k) + len(v) for k, v in labels.items()) > MAX_ANNOTATIONS_BYTES:
        problems.append(f"{field}: more than {MAX_ANNOTATIONS_BYTES // 1024} KiB altogether, the API server's limit")
    return problems


NAME_MESSAGE = ("a DNS subdomain: at most 253 lowercase letters, digits, '-' and '.', starting and ending with a "
                "letter or digit")


def name_problems(names: Mapping[str, str]) -> list[str]:
    """Object names (a service account, a priority class, ...) the API server refuses in a pod, by field."""
    return [f"{field}: {name[:100]!r} is not {NAME_MESSAGE}" for field, name in names.items()
            if name and (len(name) > 253 or not re.fullmatch(_DNS_SUBDOMAIN, name))]


def shape_problems(field: str, value: Any) -> list[str]:
    """What is wrong with the free-form field ``field`` (tolerations, affinity, valueFrom), each problem
    starting with its path from that field (``tolerations[0].effect: ...``); empty when it is well formed."""
    try:
        _SHAPES[field].validate_python(value, strict=True)
    except ValidationError as e:
        return validation_problems(e, prefix=field)
    return []
