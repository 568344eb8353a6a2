"""The bad-input corpus (tests/data/bad-input/cases.yaml): invalid and unfit Gemma4Deployments, each built as a
JSON merge patch to one valid base object, with the field its refusal names and who refuses it."""

from __future__ import annotations

import copy
import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, cast

import yaml

CORPUS = Path(__file__).resolve().parents[1] / "data" / "bad-input" / "cases.yaml"
Judge = Literal["server", "kubectl", "cel", "operator", "planner"]
JUDGES: tuple[Judge, ...] = ("server", "kubectl", "cel", "operator", "planner")
Json = dict[str, Any]


@dataclass(frozen=True)
class Case:
    name: str
    judge: Judge
    obj: Json  # the whole object, without a namespace
    field: str  # the field the refusal names ("" for planner cases)
    words: tuple[str, ...]  # planner cases: what the refusal must say

    def __str__(self) -> str:
        return self.name

    @property
    def object_name(self) -> str:
        return str(self.obj["metadata"]["name"])


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: objects merge key by key, null removes a key, anything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), value)
    return out


def expand(value: Any) -> Any:
    """``{$repeat: X, times: N}`` -> X * N (a string or a list), anywhere in ``value``."""
    if isinstance(value, dict):
        if "$repeat" in value:
            return value["$repeat"] * int(value["times"])
        return {k: expand(v) for k, v in value.items()}
    if isinstance(value, list):
        return [expand(v) for v in value]
    return value


def _case(raw: Json, base: Json) -> Case:
    judge = raw["judge"]
    assert judge in JUDGES, f"{raw['name']}: unknown judge {judge!r}"
    obj = merge_patch(merge_patch(base, {"metadata": {"name": raw["name"]}}), expand(raw["patch"]))
    return Case(raw["name"], cast(Judge, judge), obj, raw.get("field", ""), tuple(raw.get("words", ())))


@functools.cache
def load_cases() -> tuple[Case, ...]:
    data = yaml.safe_load(CORPUS.read_text())
    return tuple(_case(raw, data["base"]) for raw in data["cases"])


def base_object() -> Json:
    base: Json = yaml.safe_load(CORPUS.read_text())["base"]
    return base


def cases(judge: Judge) -> list[Case]:
    return [c for c in load_cases() if c.judge == judge]
