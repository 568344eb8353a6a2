"""Validation errors worded for the people who wrote the YAML: one line per problem, starting with the full
path of the field (``spec.serving.concurrency: expected a whole number, got true (a boolean)``).

Pydantic's own wording names Python types ("Input should be a valid integer", "Extra inputs are not permitted",
a regular expression); a Gemma4Deployment author thinks in YAML and Kubernetes quantities.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from pydantic import ValidationError
from pydantic_core import ErrorDetails, PydanticCustomError

# A Kubernetes resource quantity as the model cache size accepts it (whole units, binary or decimal suffix).
QUANTITY_PATTERN = r"^([0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|k|M|G|T|P)?)?$"
_MAX_SHOWN = 100  # characters of a bad value quoted back in a message

_EXPECTED = {
    "int_type": "a whole number", "int_parsing": "a whole number", "int_from_float": "a whole number",
    "bool_type": "true or false", "bool_parsing": "true or false",
    "float_type": "a number", "float_parsing": "a number",
    "string_type": "a string",
    "dict_type": "a mapping (key: value)", "model_type": "a mapping (key: value)",
    "model_attributes_type": "a mapping (key: value)",
    "list_type": "a list",
}


def field_path(loc: Sequence[int | str]) -> str:
    """A validation error's location as a user writes it: ``spec.serving.env[0].name``."""
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path or "(object)"


def shown(value: Any, *, kind: bool = True) -> str:
    """A value as YAML spells it, with what it is (``kind``) when that matters, cut to a readable length."""
    if isinstance(value, bool):
        text = str(value).lower() + (" (a boolean)" if kind else "")
    elif value is None:
        text = "null" + (" (nothing)" if kind else "")
    elif isinstance(value, str):
        text = f"{value[:_MAX_SHOWN]!r}{'...' if len(value) > _MAX_SHOWN else ''}" + (" (a string)" if kind else "")
    elif isinstance(value, dict):
        text = "a mapping"
    elif isinstance(value, list):
        text = "a list"
    else:
        text = repr(value) if len(repr(value)) <= _MAX_SHOWN else f"a {len(str(value))}-digit number"
    return text


def quantity_hint(value: str) -> str:
    """Why a string is not a quantity, with the spelling that probably was meant (10GB -> 10Gi)."""
    fixed = re.sub(r"(?i)([kmgtp])i?b?$", lambda m: m[1].upper() + "i", re.sub(r"\s+", "", value))
    hint = f"; use {fixed}" if fixed != value and re.fullmatch(QUANTITY_PATTERN, fixed) else ""
    return (f"{value[:_MAX_SHOWN]!r} is not a Kubernetes quantity: a number with a binary suffix Ki, Mi, Gi, Ti, Pi "
            f"(or a decimal one k, M, G, T, P), e.g. 80Gi{hint}")


def describe(error: ErrorDetails) -> str:
    """One problem of a ValidationError in words, without its path."""
    kind = error["type"]
    value = error.get("input")
    message = str(error["msg"]).removeprefix("Value error, ")
    if kind == "extra_forbidden":
        return "unknown field (not part of this object's schema: check the spelling and indentation)"
    if kind == "missing":
        return "required field is missing"
    if kind == "string_pattern_mismatch" and (error.get("ctx") or {}).get("pattern") == QUANTITY_PATTERN:
        return quantity_hint(str(value))
    if kind in ("enum", "literal_error"):
        return f"{message}; got {shown(value, kind=False)}"
    expected = _EXPECTED.get(kind)
    if expected is not None:
        scalar = kind == "string_type" and isinstance(value, int | float)
        return f"expected {expected}, got {shown(value)}" + ("; quote it to make it a string" if scalar else "")
    return message


def cross_field_error(problems: list[str]) -> PydanticCustomError:
    """One error for the rules a model breaks; each problem starts with its field path
    relative to the model, so that validation_problems can print full paths."""
    return PydanticCustomError("cross_field", "{problems}", {"problems": "\n".join(problems)})


def validation_problems(error: ValidationError, prefix: str = "") -> list[str]:
    """Each problem of ``error`` as one line that starts with the full path of the field it is about
    (``spec.serving.modalities: audio is only ...``), as the CLI prints them and the operator's status says;
    ``prefix``: the path of the validated value inside a bigger object (``tolerations``)."""
    lines: list[str] = []
    for e in error.errors():
        path = field_path([prefix, *e["loc"]] if prefix else e["loc"])
        if e["type"] == "cross_field":
            # each problem starts with the field it is about, relative to the object that has the rule
            start = f"{path}." if e["loc"] or prefix else ""
            lines += [f"{start}{part}" for part in str(e["msg"]).split("\n")]
        else:
            lines.append(f"{path}: {describe(e)}")
    return lines
