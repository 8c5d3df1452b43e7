"""``kdnb bench``: the speed benchmark of the source checkout's ``benchmarks/`` (not part of the package).
``python -m kdnb.bench`` runs ``benchmarks/bench.py``'s command line; with ``--profile``, ``kernel_profile.py``'s."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

CHECKOUT = Path(__file__).resolve().parents[1]


def benchmark(name: str = "bench") -> ModuleType:
    """``benchmarks/<name>.py`` of the source checkout, imported as ``benchmarks.<name>``."""
    if "benchmarks" not in sys.modules:
        init = CHECKOUT / "benchmarks" / "__init__.py"
        if not init.exists():
            raise FileNotFoundError(f"{init.parent} not found: the benchmark runs from a source checkout "
                                    "(git clone, then pip install -e .)")
        spec = importlib.util.spec_from_file_location("benchmarks", init)
        sys.modules["benchmarks"] = package = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(package)
    return importlib.import_module(f"benchmarks.{name}")


def main(**options: Any) -> int:
    """``kdnb bench``: the options of ``benchmarks.bench.main``; returns the exit status."""
    return benchmark().main(**options)


if __name__ == "__main__":
    sys.exit(benchmark("kernel_profile" if "--profile" in sys.argv else "bench").cli())
