"""Each adapter imports its framework only when imported itself: the package, the shared helpers
and the client load none of them (a user with one framework installed never pays for another)."""

from __future__ import annotations

import subprocess
import sys

FRAMEWORKS = ("langchain_core", "llama_index", "haystack")


def test_no_framework_is_imported_until_its_adapter_is():
    code = (
        "import sys, sparsehybrid, sparsehybrid.integrations, sparsehybrid.integrations.common, sparsehybrid.client\n"
        f"print(sorted({{m.split('.')[0] for m in sys.modules}} & set({FRAMEWORKS!r})))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
