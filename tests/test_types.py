"""
The package type-checks: mypy with the mypy-zope plugin, as configured in
setup.cfg, finds nothing.
"""

from __future__ import annotations

import subprocess
import sys

from .processes import REPO


def test_mypy() -> None:
    """
    C{mypy} over C{tailmirror} and the twistd plugin reports no issue.
    """
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--cache-dir", str(REPO / ".cache" / "mypy")],
        cwd=REPO, capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Success: no issues found" in result.stdout
