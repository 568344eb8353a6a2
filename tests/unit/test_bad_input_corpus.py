"""The bad-input corpus (tests/data/bad-input/cases.yaml) checked offline: every case is refused by the judge it
names and only for the reason it names, and every CEL rule of the generated CRD has a case. The e2e tier
(tests/e2e/test_bad_input.py) then applies the corpus to a real API server and the running operator."""

from __future__ import annotations

import re

import pytest

from gemma4_operator.api import DNS1035_LABEL_PATTERN, NAME_MAX_LENGTH
from gemma4_operator.config import OperatorConfig
from gemma4_operator.planner.plan import ClusterFacts
from gemma4_operator.reconcile import desired as rc
from tests.support.bad_input import Case, base_object, cases, expand, load_cases, merge_patch
from tests.support.crd_schema import cel_failures, crd_cel_rules, schema_errors

ACCELERATORS = "nvidia-h100-80gb"  # the e2e operator's --accelerators


def jsonschema_path(field: str) -> str:
    """``spec.env[0].name`` as crd_schema.schema_errors prints paths: ``spec.env.0.name``."""
    return re.sub(r"\[(\d+)\]", r".\1", field)


def parent_and_leaf(field: str) -> tuple[str, str]:
    parent, _, leaf = jsonschema_path(field).rpartition(".")
    return parent, leaf


def operator_refusal(case: Case) -> str:
    with pytest.raises(rc.InvalidObjectError) as refused:
        rc.parse_parent(case.obj)
    return refused.value.message


def test_the_corpus_is_large_unique_and_usable_as_object_names() -> None:
    all_cases = load_cases()
    assert len(all_cases) >= 40
    names = [c.name for c in all_cases]
    assert len(names) == len(set(names))
    for name in names:  # the object is named after the case unless the case is about names
        assert len(name) <= NAME_MAX_LENGTH and re.fullmatch(DNS1035_LABEL_PATTERN, name), name
    assert {c.judge for c in all_cases} == {"server", "kubectl", "cel", "operator", "planner"}


def test_the_base_object_is_valid_and_planned() -> None:
    base = base_object()
    assert schema_errors(base) == []
    assert cel_failures(base) == []
    desired = rc.desired_state(rc.parse_parent(base), "uid", ClusterFacts(frozenset({ACCELERATORS})),
                               OperatorConfig(accelerator_types=(ACCELERATORS,)))
    assert desired.error is None


def test_merge_patch_and_repeat() -> None:
    assert merge_patch({"a": {"b": 1, "c": 2}, "d": [1]}, {"a": {"b": None, "e": 3}, "d": [2]}) == \
        {"a": {"c": 2, "e": 3}, "d": [2]}
    assert expand({"x": {"$repeat": "ab", "times": 3}, "y": [{"$repeat": [1], "times": 2}]}) == \
        {"x": "ababab", "y": [[1, 1]]}


@pytest.mark.parametrize("case", [c for c in cases("server") if c.field != "metadata.name"], ids=str)
def test_server_case_breaks_the_openapi_schema_at_its_field(case: Case) -> None:
    parent, leaf = parent_and_leaf(case.field)
    required = f"{parent}: '{leaf}' is a required property"  # jsonschema reports a missing field at its parent
    errors = schema_errors(case.obj)
    assert any(e.startswith(f"{jsonschema_path(case.field)}: ") or e == required for e in errors), errors


@pytest.mark.parametrize("case", [c for c in cases("server") if c.field == "metadata.name"], ids=str)
def test_server_name_case_is_no_dns_subdomain(case: Case) -> None:
    """Every object's name must be a DNS-1123 subdomain (the API server's own check, before any schema)."""
    name = case.object_name
    assert len(name) > 253 or not re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*",
                                                name)
    assert "metadata.name must be a DNS-1035 label" in operator_refusal(case)


@pytest.mark.parametrize("case", cases("kubectl"), ids=str)
def test_kubectl_case_is_one_unknown_field(case: Case) -> None:
    parent, leaf = parent_and_leaf(case.field)
    assert schema_errors(case.obj) == [f"{parent}: Additional properties are not allowed ('{leaf}' was unexpected)"]
    assert cel_failures(case.obj) == []
    assert case.field.rsplit(".", 1)[0] in operator_refusal(case)  # extra="forbid": the CLI refuses it too


@pytest.mark.parametrize("case", cases("cel"), ids=str)
def test_cel_case_breaks_exactly_one_rule_at_its_field(case: Case) -> None:
    """Schema-valid (a 1.20 server stores it), refused by exactly one CEL rule, which a CEL-capable server
    reports at ``field``; the operator's pydantic twin says the same words, starting with the field."""
    assert schema_errors(case.obj) == []
    [failure] = cel_failures(case.obj)
    assert case.field == (failure.field or "metadata.name")
    if not failure.field_path:
        assert failure.message.startswith(case.field)
    refusal = operator_refusal(case)
    assert failure.message in refusal
    assert f": {case.field}" in refusal or f"; {case.field}" in refusal, refusal


@pytest.mark.parametrize("case", cases("operator"), ids=str)
def test_operator_case_passes_the_schema_and_is_refused_at_its_field(case: Case) -> None:
    """Free-form in the CRD: the server stores it as written; the operator's parse names the field."""
    assert schema_errors(case.obj) == []
    assert cel_failures(case.obj) == []
    refusal = operator_refusal(case)
    assert f": {case.field}: " in refusal or f"; {case.field}: " in refusal, refusal


@pytest.mark.parametrize("case", cases("planner"), ids=str)
def test_planner_case_is_valid_but_unfit(case: Case) -> None:
    assert schema_errors(case.obj) == []
    assert cel_failures(case.obj) == []
    desired = rc.desired_state(rc.parse_parent(case.obj), "uid", ClusterFacts(frozenset({ACCELERATORS})),
                               OperatorConfig(accelerator_types=(ACCELERATORS,)))
    assert desired.error is not None and desired.plan is None
    for words in case.words:
        assert words in desired.error.one_line


def test_every_cel_rule_of_the_crd_has_a_case() -> None:
    """A rule added to the CRD without a corpus case that breaks it (and only it) fails here."""
    broken = {(f.location, f.rule) for case in cases("cel") for f in cel_failures(case.obj)}
    missing = [f"{site.location or '(root)'}: {site.message}" for site in crd_cel_rules()
               if (site.location, site.rule) not in broken]
    assert not missing, "CEL rules without a case in tests/data/bad-input/cases.yaml:\n" + "\n".join(missing)
