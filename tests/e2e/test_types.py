"""
The package, its twistd plugin, the tests and the benchmarks type-check:
mypy with the mypy-zope plugin, as configured in setup.cfg (with klein's
stricter settings, and every function of the package annotated), finds
nothing.
"""

from __future__ import annotations

import subprocess
import sys

from ..processes import REPO


def test_mypy() -> None:
    """
    C{mypy} over C{tailmirror}, the twistd plugin, C{tests} and
    C{benchmarks}, with the stricter settings of setup.cfg (unused
    ignores, returned C{Any}, unreachable code, redundant casts, strict
    equality; untyped definitions in the package and the plugin), reports
    no issue.
    """
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--cache-dir", str(REPO / ".cache" / "mypy")],
        cwd=REPO, capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Success: no issues found" in result.stdout
