"""Engines as plug-ins: one module per engine behind the :class:`~gemma4_operator.engines.base.Engine`
protocol, found by name.

An engine is a catalog row in ``catalog/engines.yaml`` plus a module ``engines/NAME.py`` that defines
``Engine``; nothing else names it. The catalog's order is the order ``engine: auto`` tries them in.
"""

from __future__ import annotations

import importlib

from gemma4_operator.catalog import Catalog, load_catalog
from gemma4_operator.engines.base import Engine

_REGISTRIES: dict[int, tuple[Catalog, dict[str, Engine]]] = {}


def registry(catalog: Catalog | None = None) -> dict[str, Engine]:
    """Every engine of the catalog, in the catalog's order (built once per catalog)."""
    catalog = catalog or load_catalog()
    cached = _REGISTRIES.get(id(catalog))
    if cached is None or cached[0] is not catalog:
        engines: dict[str, Engine] = {}
        for name, info in catalog.engines.items():
            module = importlib.import_module(f"{__name__}.{name}")
            engines[name] = module.Engine(name, info)
        cached = _REGISTRIES[id(catalog)] = (catalog, engines)
    return cached[1]


def engine(name: str, catalog: Catalog | None = None) -> Engine:
    """The engine called ``name`` (a plan's or a spec's engine)."""
    return registry(catalog)[name]


def image_keys(catalog: Catalog | None = None) -> tuple[str, ...]:
    """Every `--image KEY=IMAGE` key: each engine's name, and NAME-cpu where it has CPU images."""
    keys: list[str] = []
    for e in registry(catalog).values():
        keys += [k for k in (*e.image_keys(gpu=True), *e.image_keys(gpu=False)) if k not in keys]
    return tuple(keys)
