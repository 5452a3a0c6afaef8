"""Every module of the package imports: a rename that left an import behind (mypy's
``ignore_missing_imports`` does not catch a missing sibling module) fails here, not in a user's run."""

from __future__ import annotations

import importlib
import pkgutil

import pytest

import sparsehybrid

MODULES = sorted(
    m.name
    for m in pkgutil.walk_packages(sparsehybrid.__path__, "sparsehybrid.")
    if not m.name.endswith("__main__")  # runs the CLI
)


@pytest.mark.parametrize("name", MODULES)
def test_module_imports(name):
    importlib.import_module(name)
