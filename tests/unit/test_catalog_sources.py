"""The catalog data files cite upstream sources, not documents that live outside this repository.

Every `source:` value and every comment in operator/gemma4_operator/catalog/*.yaml must point at something a
reader can open: a Hugging Face repo or file, an engine source file, a GitHub issue or PR, a vendor doc URL,
or say plainly that the value is an estimate or derived arithmetic.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

CATALOG_DIR = Path(__file__).resolve().parents[2] / "operator" / "gemma4_operator" / "catalog"
CATALOG_FILES = sorted(CATALOG_DIR.glob("*.yaml"))
EXPECTED_FILES = {"accelerators.yaml", "checkpoints.yaml", "engines.yaml", "formats.yaml", "known_bad.yaml",
                  "prices.yaml", "variants.yaml", "weights.yaml", "hardware_rules.yaml", "measurements.yaml",
                  "routing.yaml", "drafters.yaml"}

# Documents that are not part of this repository, and the section sign their citations use.
FORBIDDEN = ("gemma4-serving.md", "platform.md", "DESIGN.md", "§")
# The reference document's bracketed source tags ([CFG], [HF-FILES], [GFD obs], [VISS #123], ...) mean nothing
# without it. \b keeps values such as [NVIDIA-A10G] from matching.
LEGACY_TAG = re.compile(
    r"\[(?:CFG|TF|CARD|GOOG|TR|VC|VREL|RECIPE|VISS|LC|LISS|HF-FILES|NV|GFD|GKE|EKS|AKS|3P|DER|EST|GK|SEED"
    r"(?:-\d+(?:/\d+)?)?)\b[^\]]*\]")
# A source names an upstream (URL, Hugging Face, an engine, NVIDIA, an issue/PR number) or says what it is.
UPSTREAM_MARKERS = ("http", "huggingface", "vllm", "llama.cpp", "nvidia", "#", "estimate", "derived")
ROW_KEYS = ("name", "id", "variant", "format", "engine", "instruction_tuned", "repo")


def _rows(node: Any, path: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every mapping that has a `source` key, with a path and the keys that identify it."""
    if isinstance(node, dict):
        if "source" in node:
            ident = ", ".join(f"{k}={node[k]}" for k in ROW_KEYS if k in node and not isinstance(node[k], dict))
            yield (f"{path} ({ident})" if ident else path), node
        for key, value in node.items():
            yield from _rows(value, f"{path}.{key}" if path else str(key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _rows(value, f"{path}[{index}]")


def _source_rows(path: Path) -> list[tuple[str, dict[str, Any]]]:
    return list(_rows(yaml.safe_load(path.read_text(encoding="utf-8")), ""))


def test_all_catalog_files_are_checked() -> None:
    assert {p.name for p in CATALOG_FILES} == EXPECTED_FILES


@pytest.mark.parametrize("path", CATALOG_FILES, ids=lambda p: p.name)
def test_no_line_cites_an_outside_document(path: Path) -> None:
    """Covers comments (whole-line and trailing) and values, including multi-line source strings."""
    problems = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        found = [word for word in FORBIDDEN if word in line]
        found += LEGACY_TAG.findall(line)
        if found:
            problems.append(f"{path.name}:{number}: {found} in {line.strip()!r}")
    assert not problems, "cite the upstream source instead:\n" + "\n".join(problems)


@pytest.mark.parametrize("path", CATALOG_FILES, ids=lambda p: p.name)
def test_every_source_names_an_upstream(path: Path) -> None:
    rows = _source_rows(path)
    assert rows, f"{path.name}: no rows with a source key"
    problems = []
    for where, row in rows:
        source = row["source"]
        if not isinstance(source, str) or not source.strip():
            problems.append(f"{path.name} {where}: empty source {source!r}")
            continue
        if any(word in source for word in FORBIDDEN) or LEGACY_TAG.search(source):
            problems.append(f"{path.name} {where}: cites an outside document: {source!r}")
        if not any(marker in source.lower() for marker in UPSTREAM_MARKERS):
            problems.append(f"{path.name} {where}: names no upstream (one of {UPSTREAM_MARKERS}): {source!r}")
    assert not problems, "\n".join(problems)
