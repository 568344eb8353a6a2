"""A Gemma4Deployment read as the API server reads it: JSON types, no coercion.

Pydantic's default (lax) mode turns ``true`` into 1, ``"3"`` into 3 and ``"yes"`` into true, so a file the API
server refuses (``concurrency: true`` is not an integer) would plan and render offline. Validating the JSON
form strictly keeps the CLI, the operator and the server in agreement; enums still come from strings, as in
JSON they must.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError
from pydantic_core import PydanticCustomError

from gemma4_operator.api.models import KIND, Gemma4Deployment

MAX_DEPTH = 64  # nesting levels of an object; its deepest field (pod affinity) is about 12 levels down


def _as_json(value: Any) -> Any:
    """What JSON cannot hold, as YAML-to-JSON conversion (kubectl's) writes it."""
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, set | frozenset):  # YAML !!set: a mapping to nulls
        return dict.fromkeys(value)
    if isinstance(value, bytes):  # YAML !!binary
        return base64.b64encode(value).decode("ascii")
    return str(value)  # a timestamp


def _check_depth(doc: Mapping[str, Any]) -> None:
    """A ValidationError at the first value nested deeper than MAX_DEPTH (the free-form fields let a tenant
    nest as deep as the API server stores; JSON encoding and parsing are recursive)."""
    stack: list[tuple[Any, tuple[int | str, ...]]] = [(doc, ())]
    while stack:
        value, path = stack.pop()
        if len(path) > MAX_DEPTH:
            problem = PydanticCustomError("too_deep", "nested more than {limit} levels deep", {"limit": MAX_DEPTH})
            raise ValidationError.from_exception_data(KIND, [{"type": problem, "loc": path[:8], "input": None}])
        if isinstance(value, Mapping):
            stack += [(v, (*path, str(k))) for k, v in value.items()]
        elif isinstance(value, list | tuple):
            stack += [(v, (*path, i)) for i, v in enumerate(value)]


def parse_object(doc: Mapping[str, Any]) -> Gemma4Deployment:
    """The object as a model; pydantic's ValidationError (see ``validation_problems``) when it is not one;
    TypeError for a mapping key JSON cannot hold (binary)."""
    _check_depth(doc)
    return Gemma4Deployment.model_validate_json(json.dumps(doc, default=_as_json), strict=True)
