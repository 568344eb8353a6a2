"""The catalog's rows agree with each other: derived numbers follow from the architecture fields they
derive from, names follow the upstream naming, and every row another row points at exists."""

from __future__ import annotations

import pytest

from gemma4_operator.catalog import load_catalog

CATALOG = load_catalog()
VOCAB = 262144  # vocab_size in every Gemma 4 config.json


@pytest.mark.parametrize("name", sorted(CATALOG.variants))
def test_derived_parameter_counts_follow_the_architecture(name: str) -> None:
    v = CATALOG.variants[name]
    assert v.params.token_embedding == VOCAB * v.hidden_size, "token_embedding = vocab x hidden_size"
    assert (v.kind == "moe") == (v.experts > 0) == (0 < v.experts_per_token <= v.experts), "MoE fields agree"
    assert v.params.experts > 0 if v.is_moe else v.params.experts == 0


@pytest.mark.parametrize("checkpoint", CATALOG.checkpoints, ids=lambda c: f"{c.variant}-{c.format}-{c.engine}")
def test_checkpoints_name_their_variant_and_files(checkpoint: object) -> None:
    from gemma4_operator.catalog import Checkpoint

    assert isinstance(checkpoint, Checkpoint)
    v = CATALOG.variants[checkpoint.variant]
    assert v.hf_name.lower() in checkpoint.repo.lower(), f"{checkpoint.repo} is not a {v.hf_name} repository"
    assert checkpoint.format in CATALOG.formats and checkpoint.engine in CATALOG.engines
    assert checkpoint.engine in CATALOG.formats[checkpoint.format].engines
    gguf = CATALOG.engines[checkpoint.engine].weights == "gguf"
    assert (checkpoint.file is not None) == gguf == (checkpoint.quant_tag is not None), "GGUF rows name their file"
    if checkpoint.file is not None:
        assert v.hf_name in checkpoint.file and checkpoint.file.endswith(".gguf")
        assert checkpoint.quant_tag is not None and checkpoint.quant_tag in checkpoint.file
    assert (checkpoint.mmproj is None) == (checkpoint.mmproj_bytes is None), "an mmproj file has its size"


def test_engines_auto_formats_and_kv_dtypes_are_catalog_rows() -> None:
    for name, engine in CATALOG.engines.items():
        assert set(engine.auto_formats) <= {f for f, info in CATALOG.formats.items() if name in info.engines}, name


def test_known_bad_rule_ids_are_unique() -> None:
    ids = [r.id for r in CATALOG.known_bad]
    assert len(ids) == len(set(ids))
