"""The API's literals that repeat catalog facts (enums, CEL rule lists) are equal to the catalog.

CEL rules cannot read catalog/*.yaml, so api/models.py spells these facts out; a catalog change
that is not mirrored there fails here, naming the literal to update.
"""

from __future__ import annotations

from gemma4_operator.api import EngineChoice, KvCacheDtypeChoice, QuantizationChoice, Variant, models
from gemma4_operator.catalog import load_catalog
from gemma4_operator.engines import registry

CATALOG = load_catalog()


def _choices(enum: type[EngineChoice] | type[QuantizationChoice] | type[KvCacheDtypeChoice]) -> set[str]:
    return {c.value for c in enum} - {"auto"}


def test_enums_list_exactly_the_catalog_rows() -> None:
    assert {v.value for v in Variant} == set(CATALOG.variants), "api Variant vs variants.yaml"
    assert _choices(EngineChoice) == set(CATALOG.engines), "api EngineChoice vs engines.yaml"
    assert _choices(QuantizationChoice) == set(CATALOG.formats), "api QuantizationChoice vs formats.yaml"
    for name, info in CATALOG.engines.items():
        assert _choices(KvCacheDtypeChoice) == set(info.kv_bytes_per_element), f"KV dtypes of {name}"


def test_every_catalog_engine_has_a_plugin_module() -> None:
    assert list(registry()) == list(CATALOG.engines)


def test_variant_facts_match_variants_yaml() -> None:
    no_audio = {n for n, v in CATALOG.variants.items() if "audio" not in v.modalities}
    assert set(models._NO_AUDIO_VARIANTS) == no_audio
    for name in models._E_SERIES:
        assert CATALOG.variants[name].context_length == models._E_SERIES_MAX_LEN
    others = {n for n in CATALOG.variants if n not in models._E_SERIES}
    assert all(CATALOG.variants[n].context_length > models._E_SERIES_MAX_LEN for n in others)
    assert max(v.context_length for v in CATALOG.variants.values()) == models._MAX_LEN


def test_engine_and_format_facts_match_engines_and_formats_yaml() -> None:
    unserved = {e: {f for f, info in CATALOG.formats.items() if e not in info.engines} for e in CATALOG.engines}
    assert {e: set(f) for e, f in models._UNSERVED_FORMATS.items()} == unserved
    gpu_only_engines = {e for e, info in CATALOG.engines.items() if not info.devices.cpu}
    assert set(models._GPU_ONLY_ENGINES) == gpu_only_engines
    cpu_formats = {f for f, info in CATALOG.formats.items() if set(info.engines) - gpu_only_engines}
    no_knob = {e for e, info in CATALOG.engines.items() if not info.gpu_memory_utilization_flag}
    assert set(models._NO_GPU_MEMORY_UTILIZATION_ENGINES) == no_knob
    knob = [info.gpu_memory_utilization for info in CATALOG.engines.values() if info.gpu_memory_utilization_flag]
    assert knob == [models.GPU_MEMORY_UTILIZATION_DEFAULT]
    assert set(models._GPU_ONLY_FORMATS) == set(CATALOG.formats) - cpu_formats


def test_cel_rules_are_built_from_those_literals() -> None:
    rules = [r["rule"] for r in models._SPEC_RULE_LIST]
    for engine, formats in models._UNSERVED_FORMATS.items():
        assert f"self.engine != '{engine}' || !(self.quantization in {list(formats)!r})" in rules
    assert f"self.accelerator.type != 'cpu' || !(self.quantization in {list(models._GPU_ONLY_FORMATS)!r})" in rules
