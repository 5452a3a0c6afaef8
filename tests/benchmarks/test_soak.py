"""A short run of the chaos soak (benchmarks/soak.py): random index, sync, search and kill -9
steps on one embedded store, every invariant checked after every step (issue 23)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

SOAK = Path(__file__).resolve().parents[2] / "benchmarks" / "soak.py"


def test_a_short_chaos_soak_keeps_every_acknowledged_document():
    spec = importlib.util.spec_from_file_location("soak", SOAK)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    counts = module.soak(seconds=25, seed=7, ids=120)
    assert counts["checks"] >= 5  # every step was checked (a failed invariant raises)
    assert counts["index"] + counts["sync"] >= 2
