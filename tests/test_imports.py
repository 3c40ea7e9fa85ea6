"""A small run loads only what it uses: Pyomo's scipy callback must not pull in scipy.stats."""

from __future__ import annotations

import subprocess
import sys


def test_engine_import_leaves_unused_scipy_subpackages_unloaded():
    code = ("import sys, allocator.api, allocator.engine; "
            "print(sorted(m for m in ('scipy.stats', 'scipy.integrate', 'scipy.spatial') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
