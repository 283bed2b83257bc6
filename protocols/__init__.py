"""The paper's evaluations, installed as the package ``rdbench_protocols`` (this folder; never as a top-level
``protocols``). ``register()`` adds the run protocols (how one run gets its data and is evaluated) and the
paper tables (grids, reference numbers, cell mapping) to rdbench's registries. It is the entry point of the
``rdbench.protocols`` group, called by the CLI (``rdbench.registry.load_plugins``); calling it again, or
importing a module twice, is harmless. May import every wing but the CLI and the report."""

from __future__ import annotations

import importlib

MODULES = ("mvtec", "novelty", "table1_detection", "table2_localisation", "table3_complexity", "table4_novelty",
           "ablations")


def register() -> None:
    for name in MODULES:
        importlib.import_module(f"{__name__}.{name}")  # each module registers what it defines
